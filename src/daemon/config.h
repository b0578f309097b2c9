// kilnd's configuration: defaults < config file (JSON or key=value) < environment < flags.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "base/result.h"
#include "daemon/auth/scope.h"
#include "daemon/net/egress_options.h"
#include "daemon/net/network_policy.h"

namespace kiln::daemon {

enum class OnShutdown { Destroy, Keep };

struct DaemonConfig {
    std::string data_dir = "/var/lib/kiln";   // data_dir, KILN_DATA_DIR, --data-dir
    std::string listen = "127.0.0.1:7070";    // listen, KILN_LISTEN, --listen
    // host:port of the E2B listener (docs/e2b.md: E2B's control plane and envd for E2B's SDKs);
    // empty: off. KILN_E2B_LISTEN, --e2b-listen.
    std::string e2b_listen;
    // Where kilnd keeps its records (docs/kilnd.md, "Store"): "sqlite" ($DATA/kilnd.db), or a
    // postgresql:// (postgres://) URL that a fleet of kilnds shares (docs/fleet.md).
    std::string store = "sqlite";
    // The fleet's shared secret (hosts authenticate to each other with it; a postgresql:// store
    // needs one): the value (env KILN_FLEET_SECRET; deprecated as a plain key, as every secret) or
    // a 0600 file holding it.
    std::string fleet_secret;
    std::string fleet_secret_file;
    int64_t max_sandboxes = 64;               // live sandboxes (creating + running)
    int64_t max_memory_mib = 16384;           // sum of the live sandboxes' memory_mib
    int64_t max_ttl_seconds = 86400;
    int64_t default_ttl_seconds = 600;
    // Every token's limits unless it was created with its own (docs/tenants.md): key=value text
    // as `kilnd token create --quota` takes it.
    TokenQuota token_quota{64, std::nullopt, 100, 100 * 1024, 100, 7 * 86400};
    OnShutdown on_shutdown = OnShutdown::Destroy;
    std::string accel = "auto";               // auto | kvm | tcg
    bool keep_spare = true;                   // a QEMU started ahead per template (faster creates)
    bool warm_spare = true;                   // ... loaded and warmed up ahead, then stopped (vm/spare_pool.h)
    // The VM jail (docs/security.md): each QEMU runs as its own uid from this range.
    bool allow_unconfined = false;            // run VMs without jail or seccomp when the host cannot
    bool jail = true;                         // false: no jail (benchmarks' baseline); needs allow_unconfined
    int64_t jail_uid_base = 2000000000;
    int64_t jail_uid_count = 65536;
    int64_t vm_memory_overhead_mib = 96;      // a VM's memory limit: guest RAM + TCG cache + this
    int64_t vm_memory_limit_mib = 0;          // a fixed memory limit for every VM instead; 0: computed
    std::string log_level = "info";
    size_t max_json_body = 1 << 20;
    size_t max_upload_body = 64ull << 20;
    size_t max_exec_output = 4ull << 20;      // bytes kept per stream of a buffered exec (docs/kilnd.md)
    int agent_send_timeout_seconds = 120;     // a frame the guest has not taken by then: VM lost
    int client_timeout_seconds = 30;
    int worker_threads = 32;
    int max_requests_per_token = 64;          // API requests in flight per token (docs/http.md)
    int max_streams_per_token = 256;          // open streams (log follow, exec streams) per token
    // GitHub integration (docs/github.md). The secret and token are never logged. Secrets are
    // best given as files (the *_file keys, or $CREDENTIALS_DIRECTORY): daemon/secrets.h reads
    // them; the plain keys (and their KILN_* variables) are deprecated.
    std::string github_webhook_secret;                      // empty: POST /v1/ci/github answers 503
    std::string github_webhook_secret_file;                 // a 0600 file holding it
    std::string github_api_url = "https://api.github.com";  // commit statuses go here
    std::string github_token;                               // empty: no commit statuses
    std::string github_token_file;                          // a 0600 file holding it
    std::string public_url;  // how people reach kilnd (links in statuses); empty: http://<listen>
    int ci_bakes_kept = 16;              // CI bakes kept; the least recently used beyond are deleted
    int64_t ci_bake_min_idle_seconds = 600;  // a bake used this recently is never evicted
    int ci_workers = 2;      // CI jobs run at once (docs/ci.md)
    // A running CI job's lease is renewed this often and lasts ci_lease_timeout_seconds: a job
    // whose host stopped renewing it for that long is re-queued by another host (once).
    int64_t ci_lease_renew_seconds = 3;
    int64_t ci_lease_timeout_seconds = 15;
    std::string ci_secrets_dir;  // one 0600 file per CI secret, named after it (daemon/secrets.h)
    std::string ci_secrets_policy;  // which repositories each CI secret goes to (ci/jobs/secret_policy.h)
    std::string github_webhook_secrets_dir;  // <dir>/<owner>/<repo>: a repository's own webhook secret
    std::string github_repos;  // the webhook's repository allowlist: owner/repo,owner/*; empty: all
    // Where CI code may come from (docs/ci.md): repository prefixes for non-admin callers and
    // webhooks (comma or space separated, checked by ci::RepoAllowlist at start-up), the user git
    // runs as for URLs, a cache repository's size cap and one git fetch's time limit.
    std::string ci_repos;
    int64_t ci_git_uid = 1999999999;  // just below the default jail range: a uid of its own
    int64_t ci_repo_max_mib = 2048;
    int64_t ci_git_timeout_seconds = 600;
    // Disk hygiene (docs/kilnd.md, "Disk"). New work (a create, fork, snapshot, job) is refused
    // with 503 while the data dir's filesystem has less free than the larger of these two.
    int64_t min_free_disk_mib = 2048;
    int64_t min_free_disk_percent = 2;
    // Retention, applied every retention_interval_seconds, oldest first, never to a job that has
    // not finished or a git mirror a queued or running job needs. 0 days: kept forever; 0 GiB: no cap.
    int64_t ci_job_retention_days = 30;  // a finished job's files (log, artifacts) and row
    int64_t ci_jobs_max_gib = 0;         // all job dirs together: the oldest finished jobs' files go first
    int64_t ci_git_retention_days = 14;  // a ci/git mirror no job fetched from for this long
    int64_t ci_git_max_gib = 0;          // all mirrors together: the least recently used go first
    int64_t retention_interval_seconds = 3600;
    // Sandbox networking (docs/network.md).
    net::NetworkPolicy network_default;         // creates without `network`: mode none unless set
    std::string network_pool = "10.201.0.0/16"; // one /30 per sandbox with a NIC
    std::string network_dns;                    // resolver guests' DNS goes to; empty: the host's
    net::NetworkPolicy ci_network_trusted;      // CI jobs' VMs (docs/ci.md); none by default
    net::NetworkPolicy ci_network_untrusted;    // a fork's pull request: none or an allowlist only
    // network_open_allow and the per-sandbox connection limits (network_max_connections,
    // network_new_connections_per_second, network_new_connection_burst).
    net::EgressOptions network_egress;
    // This kilnd as a host of a fleet (docs/fleet.md): its name in the store (empty: the machine's
    // hostname, filled in by resolve_host_identity), the URL the other hosts reach it at (empty:
    // http://<listen>), how often it heartbeats and how old a heartbeat makes a host dead.
    std::string host_name;
    std::string advertise_url;
    int64_t host_heartbeat_seconds = 2;
    int64_t host_timeout_seconds = 15;
};

// Every key the file, env and flags accept, as written in a file (flags: --key-with-dashes,
// env: KILN_KEY_IN_CAPS).
const std::map<std::string, std::string>& config_keys();  // key -> description

// Sets one key from text; invalid_argument naming the key when the value does not parse or is out
// of range, or when the key is unknown.
Status apply_config_value(DaemonConfig& config, const std::string& key, const std::string& value);

// Key/value pairs from a config file: a JSON object (numbers, strings, booleans; a list of strings
// becomes its comma-separated form) or lines of
// key=value ('#' comments, blank lines). Unknown keys are an error (a typo must not pass silently).
Result<std::map<std::string, std::string>> parse_config_text(const std::string& text);

// The KILN_* variables that name config keys, from `environ`-style entries.
std::map<std::string, std::string> config_from_env(char** envp);

// Checks the combination (default_ttl <= max_ttl, and so on).
Status validate_config(const DaemonConfig& config);

// What Db::open takes for the configured store: $data_dir/kilnd.db for "sqlite", else the URL.
std::string store_spec(const DaemonConfig& config);
// Fills in host_name (the machine's hostname) and advertise_url (http://<listen>) where not set.
Status resolve_host_identity(DaemonConfig& config);

// defaults, then `file_path` (if not empty), then env, then flags.
Result<DaemonConfig> load_config(const std::string& file_path, char** envp,
                                 const std::map<std::string, std::string>& flags);

}  // namespace kiln::daemon
