// Store: kilnd's durable records (tokens, sandboxes, snapshots) behind one small interface, so
// SQLite (the default, sqlite_store.h) can later be joined by PostgreSQL.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "daemon/sandboxes/sandbox_service.h"

namespace kiln::daemon {

struct TokenRecord {
    int64_t id = 0;
    std::string name;
    std::string sha256_hex;  // of the token; the token itself is never stored
    int64_t created_at_ms = 0;
    bool revoked = false;
    ScopeSet scopes = 0;
    TokenQuota quota;  // the token's own overrides (unset: kilnd's defaults)
};

// What a new token is.
struct TokenSpec {
    std::string name;
    ScopeSet scopes = 0;
    TokenQuota quota;
};

// A sandbox's record: what the API shows plus where its VM lives on this host.
struct SandboxRecord {
    SandboxInfo info;
    std::string run_dir;  // $DATA/vms/<vm id>, empty until QEMU started
};

struct SnapshotRecord {
    SnapshotInfo info;
    std::string dir;  // $DATA/snapshots/<id>
};

// Thread-safe: any method from any thread.
class Store {
public:
    virtual ~Store() = default;

    virtual Result<int64_t> insert_token(const TokenSpec& spec, const std::string& sha256_hex, int64_t created_at_ms) = 0;
    // A token that may do everything (what every token was before scopes): tests and upgrades.
    Result<int64_t> insert_token(const std::string& name, const std::string& sha256_hex, int64_t created_at_ms) {
        return insert_token(TokenSpec{name, static_cast<ScopeSet>(Scope::Admin), {}}, sha256_hex, created_at_ms);
    }
    virtual Result<std::optional<TokenRecord>> find_token_by_hash(const std::string& sha256_hex) = 0;
    // A forwarded request names its caller's token by id (docs/fleet.md).
    virtual Result<std::optional<TokenRecord>> find_token_by_id(int64_t id) = 0;
    virtual Result<std::vector<TokenRecord>> list_tokens() = 0;
    // Revokes the token with this id or, if `id_or_name` is not a number, every token of that name.
    // Returns how many were revoked.
    virtual Result<int> revoke_token(const std::string& id_or_name) = 0;

    virtual Status insert_sandbox(const SandboxRecord& record) = 0;
    virtual Status update_sandbox(const SandboxRecord& record) = 0;  // every field, by id
    // A record that cannot be read (a state this kilnd does not know) is an error naming it.
    virtual Result<std::optional<SandboxRecord>> get_sandbox(const std::string& id) = 0;
    // Newest first. live_only: those not ended only (creating, running, pausing, paused, resuming). owner 0: every owner. Records that
    // cannot be read are logged and left out (the others stay usable).
    virtual Result<std::vector<SandboxRecord>> list_sandboxes(int64_t owner_token_id, bool live_only) = 0;
    // One host's sandboxes in every state (its reconcile's), newest first; unreadable rows as above.
    virtual Result<std::vector<SandboxRecord>> list_host_sandboxes(const std::string& host) = 0;
    // Every known state, zero included; rows in a state this kilnd does not know are logged, not counted.
    virtual Result<std::map<std::string, int64_t>> count_sandboxes_by_state() = 0;

    virtual Status insert_snapshot(const SnapshotRecord& record) = 0;
    virtual Result<std::optional<SnapshotRecord>> get_snapshot(const std::string& id) = 0;
    virtual Result<std::vector<SnapshotRecord>> list_snapshots(int64_t owner_token_id) = 0;  // 0: all; newest first
    virtual Status delete_snapshot(const std::string& id) = 0;
    // Adds `host` to the snapshot's holders (hosts_json) once it holds a verified copy; in one
    // transaction, so that two hosts copying at once both end up listed.
    virtual Status add_snapshot_host(const std::string& id, const std::string& host) = 0;

    // Checkpoints the WAL and closes; later calls fail. Idempotent. In kilnd the connection is
    // shared with CI's stores (src/kilnd/kilnd_db.h), so this comes last, once they are done.
    virtual void close() = 0;
};

}  // namespace kiln::daemon
