// DbStore: the Store over kilnd.db's tokens, sandboxes and snapshots tables, on a connection
// it shares with the file's other stores (CI's; see base/db.h for the locking).
#pragma once

#include <memory>
#include <string>

#include "base/db.h"
#include "daemon/store/store.h"

namespace kiln::daemon {

class DbStore final : public Store {
public:
    // `db` must have the daemon's migrations (migrations.h) run; kilnd runs every module's at once
    // (src/kilnd/kilnd_db.h).
    explicit DbStore(std::shared_ptr<Db> db) : m_db(std::move(db)) {}
    // Opens `path` on a connection of its own and runs the daemon's migrations only: for tests and
    // tools that need nothing else of kilnd.db.
    static Result<std::unique_ptr<DbStore>> open(const std::string& path);

    using Store::insert_token;
    Result<int64_t> insert_token(const TokenSpec& spec, const std::string& sha256_hex, int64_t created_at_ms) override;
    Result<std::optional<TokenRecord>> find_token_by_hash(const std::string& sha256_hex) override;
    Result<std::optional<TokenRecord>> find_token_by_id(int64_t id) override;
    Result<std::vector<TokenRecord>> list_tokens() override;
    Result<int> revoke_token(const std::string& id_or_name) override;

    Status insert_sandbox(const SandboxRecord& record) override;
    Status update_sandbox(const SandboxRecord& record) override;
    Result<std::optional<SandboxRecord>> get_sandbox(const std::string& id) override;
    Result<std::vector<SandboxRecord>> list_sandboxes(int64_t owner_token_id, bool live_only) override;
    Result<std::vector<SandboxRecord>> list_host_sandboxes(const std::string& host) override;
    Result<std::map<std::string, int64_t>> count_sandboxes_by_state() override;

    Status insert_snapshot(const SnapshotRecord& record) override;
    Result<std::optional<SnapshotRecord>> get_snapshot(const std::string& id) override;
    Result<std::vector<SnapshotRecord>> list_snapshots(int64_t owner_token_id) override;
    Status delete_snapshot(const std::string& id) override;
    Status add_snapshot_host(const std::string& id, const std::string& host) override;

    void close() override;

private:
    std::shared_ptr<Db> m_db;
};

}  // namespace kiln::daemon
