// SqliteStore: the Store in $KILN_DATA_DIR/kilnd.db (WAL), one connection behind a mutex.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "base/sqlite_db.h"
#include "daemon/store/store.h"

namespace kiln::daemon {

class SqliteStore final : public Store {
public:
    // Opens or creates the database and applies the migrations.
    static Result<std::unique_ptr<SqliteStore>> open(const std::string& path);

    Result<int64_t> insert_token(const std::string& name, const std::string& sha256_hex, int64_t created_at_ms) override;
    Result<std::optional<TokenRecord>> find_token_by_hash(const std::string& sha256_hex) override;
    Result<std::vector<TokenRecord>> list_tokens() override;
    Result<int> revoke_token(const std::string& id_or_name) override;

    Status insert_sandbox(const SandboxRecord& record) override;
    Status update_sandbox(const SandboxRecord& record) override;
    Result<std::optional<SandboxRecord>> get_sandbox(const std::string& id) override;
    Result<std::vector<SandboxRecord>> list_sandboxes(int64_t owner_token_id, bool live_only) override;
    Result<std::map<std::string, int64_t>> count_sandboxes_by_state() override;

    Status insert_snapshot(const SnapshotRecord& record) override;
    Result<std::optional<SnapshotRecord>> get_snapshot(const std::string& id) override;
    Result<std::vector<SnapshotRecord>> list_snapshots(int64_t owner_token_id) override;
    Status delete_snapshot(const std::string& id) override;

    void close() override;

private:
    explicit SqliteStore(std::unique_ptr<SqliteDb> db) : m_db(std::move(db)) {}
    std::mutex m_mutex;  // guards m_db
    std::unique_ptr<SqliteDb> m_db;
};

}  // namespace kiln::daemon
