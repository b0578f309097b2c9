// kilnd's SQLite schema, version by version (see migrations.h). Append; never edit a shipped one.
#include "daemon/store/migrations.h"

#include <chrono>

namespace kiln::daemon {

const std::vector<Migration>& migrations() {
    static const std::vector<Migration> list = {
        {1, R"sql(
CREATE TABLE tokens (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  sha256 TEXT NOT NULL UNIQUE,
  created_at_ms INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE sandboxes (
  id TEXT PRIMARY KEY,
  owner_token_id INTEGER NOT NULL REFERENCES tokens(id),
  state TEXT NOT NULL,
  template_id TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL,
  ended_at_ms INTEGER NOT NULL DEFAULT 0,
  metadata_json TEXT NOT NULL DEFAULT '{}',
  env_json TEXT NOT NULL DEFAULT '{}',
  vcpus INTEGER NOT NULL,
  memory_mib INTEGER NOT NULL,
  parent_id TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  create_ms REAL NOT NULL DEFAULT 0,
  qemu_pid INTEGER NOT NULL DEFAULT 0,
  run_dir TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sandboxes_owner ON sandboxes(owner_token_id, created_at_ms);
CREATE INDEX sandboxes_state ON sandboxes(state);
CREATE TABLE snapshots (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL DEFAULT '',
  owner_token_id INTEGER NOT NULL REFERENCES tokens(id),
  sandbox_id TEXT NOT NULL,
  template_id TEXT NOT NULL DEFAULT '',
  created_at_ms INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL DEFAULT 0,
  vcpus INTEGER NOT NULL,
  memory_mib INTEGER NOT NULL,
  dir TEXT NOT NULL
);
CREATE INDEX snapshots_owner ON snapshots(owner_token_id, created_at_ms);
)sql"},
        // 2: the CI queue (src/ci/jobs): jobs and the bake cache (template key -> snapshot).
        {2, R"sql(
CREATE TABLE ci_jobs (
  id TEXT PRIMARY KEY,
  owner_token_id INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL,
  spec_json TEXT NOT NULL,
  sha TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  template_key TEXT NOT NULL DEFAULT '',
  bake_hit INTEGER NOT NULL DEFAULT 0,
  steps_json TEXT NOT NULL DEFAULT '[]',
  junit_json TEXT NOT NULL DEFAULT '',
  artifacts_json TEXT NOT NULL DEFAULT '[]',
  created_at_ms INTEGER NOT NULL,
  started_at_ms INTEGER NOT NULL DEFAULT 0,
  finished_at_ms INTEGER NOT NULL DEFAULT 0,
  steps_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ci_jobs_state ON ci_jobs(state, created_at_ms);
CREATE TABLE ci_bake_cache (
  key TEXT PRIMARY KEY,
  template TEXT NOT NULL,
  snapshot_id TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  used_at_ms INTEGER NOT NULL
);
)sql"},
        // 3: per-sandbox networking (docs/network.md): the policy as canonical JSON, and whether
        // the VM has a NIC (and so a namespace for the reconcile to sweep).
        {3, R"sql(
ALTER TABLE sandboxes ADD COLUMN network_json TEXT NOT NULL DEFAULT '{"mode":"none"}';
ALTER TABLE sandboxes ADD COLUMN has_nic INTEGER NOT NULL DEFAULT 0;
)sql"},
    };
    return list;
}

Result<int> schema_version(SqliteDb& db) {
    TRY(db.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)"));
    auto stmt = TRY(db.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version"));
    if (!TRY(stmt.step())) return 0;
    return static_cast<int>(stmt.column_int(0));
}

Status migrate(SqliteDb& db) {
    int current = TRY(schema_version(db));
    int newest = migrations().empty() ? 0 : migrations().back().version;
    if (current > newest)
        return make_error(ErrorCode::StoreFailed, "the database has schema version " + std::to_string(current) +
                                              ", newer than this kilnd knows (" + std::to_string(newest) + ")");
    for (const auto& m : migrations()) {
        if (m.version <= current) continue;
        TRY(db.exec("BEGIN IMMEDIATE"));
        Status st = db.exec(m.sql);
        if (st.ok()) {
            auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
            auto ins = db.prepare("INSERT INTO schema_version(version, applied_at_ms) VALUES (?, ?)");
            if (ins.ok()) st = ins->bind(1, int64_t(m.version)).bind(2, int64_t(now)).run();
            else st = ins.error();
        }
        if (!st.ok()) {
            (void)db.exec("ROLLBACK");
            return make_error(ErrorCode::StoreFailed, "migration " + std::to_string(m.version) + ": " + st.error().message);
        }
        TRY(db.exec("COMMIT"));
    }
    return ok_status();
}

}  // namespace kiln::daemon
