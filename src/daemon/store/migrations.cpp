// The daemon's tables, version by version (see migrations.h). Append, with the next version free
// across kilnd.db (not the next after this list's last); never edit a shipped one.
#include "daemon/store/migrations.h"

namespace kiln::daemon {

const Migrations& migrations() {
    static const Migrations list = {
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
        // 2 is CI's (ci_jobs, ci_bake_cache: ci/jobs/job_store.cpp); it was in this list until the
        // modules declared their own, which is why the numbers interleave.
        // 3: per-sandbox networking (docs/network.md): the policy as canonical JSON, and whether
        // the VM has a NIC (and so a namespace for the reconcile to sweep).
        {3, R"sql(
ALTER TABLE sandboxes ADD COLUMN network_json TEXT NOT NULL DEFAULT '{"mode":"none"}';
ALTER TABLE sandboxes ADD COLUMN has_nic INTEGER NOT NULL DEFAULT 0;
)sql"},
        // 4 is the GitHub delivery log's (ci/github/delivery_log.cpp).
        // 5: scoped tokens and per-token quotas (docs/tenants.md). Tokens made before scopes
        // existed could do everything, so they keep it as admin; the upgrade note says so.
        {5, R"sql(
ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE tokens ADD COLUMN quota_json TEXT NOT NULL DEFAULT '{}';
)sql"},
        // 7-10 are CI's, GitHub's and the dashboard's sessions'.
        // 11: a fleet of hosts on one store (docs/fleet.md). Each kilnd registers a row in hosts and
        // heartbeats it; every sandbox names the host its VM runs on (rows from before: '', which the
        // first kilnd to start claims as its own), every snapshot the hosts holding a copy (a JSON
        // list of names; '[]' before, claimed likewise).
        {11, R"sql(
CREATE TABLE hosts (
  name TEXT PRIMARY KEY,
  advertise_url TEXT NOT NULL,
  max_sandboxes INTEGER NOT NULL,
  vcpus INTEGER NOT NULL,
  max_memory_mib INTEGER NOT NULL,
  accel TEXT NOT NULL,
  version TEXT NOT NULL,
  data_dir TEXT NOT NULL DEFAULT '',
  started_at_ms INTEGER NOT NULL,
  heartbeat_at_ms INTEGER NOT NULL,
  stopped_at_ms INTEGER NOT NULL DEFAULT 0,
  draining INTEGER NOT NULL DEFAULT 0
);
ALTER TABLE sandboxes ADD COLUMN host TEXT NOT NULL DEFAULT '';
CREATE INDEX sandboxes_host ON sandboxes(host, state);
-- Placement asks which hosts have run a template (HostStore::hosts_that_ran) on every create.
CREATE INDEX sandboxes_template_host ON sandboxes(template_id, host);
ALTER TABLE snapshots ADD COLUMN hosts_json TEXT NOT NULL DEFAULT '[]';
)sql"},
        // 12 and 13 are CI's. 14: pause and resume (docs/pause.md): whether the end of the TTL
        // pauses, and while paused, when it was paused, the TTL left and its snapshot's bytes.
        {14, R"sql(
ALTER TABLE sandboxes ADD COLUMN auto_pause INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sandboxes ADD COLUMN paused_at_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sandboxes ADD COLUMN ttl_left_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sandboxes ADD COLUMN paused_bytes INTEGER NOT NULL DEFAULT 0;
)sql"},
    };
    return list;
}

}  // namespace kiln::daemon
