// kilnd's configuration sources and their precedence (see config.h).
#include "daemon/config.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/db.h"
#include "base/file_util.h"
#include "daemon/fleet/host_store.h"
#include "daemon/net/address_pool.h"

namespace kiln::daemon {
namespace {

Error bad(const std::string& key, const std::string& why) {
    return make_error(ErrorCode::InvalidArgument, "config " + key + ": " + why);
}

Result<int64_t> parse_int(const std::string& key, const std::string& text, int64_t min, int64_t max) {
    int64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty())
        return bad(key, "'" + text + "' is not an integer");
    if (v < min || v > max)
        return bad(key, std::to_string(v) + " is out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    return v;
}

Result<bool> parse_bool(const std::string& key, const std::string& text) {
    if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
    if (text == "false" || text == "0" || text == "no" || text == "off") return false;
    return bad(key, "'" + text + "' is not a boolean");
}

std::string trim(const std::string& s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return s.substr(b, e - b);
}

// "host:port" with a numeric port 0..65535.
Status check_listen(const std::string& key, const std::string& text) {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) return bad(key, "'" + text + "' is not host:port");
    auto port = parse_int(key, text.substr(colon + 1), 0, 65535);
    if (!port.ok()) return bad(key, "'" + text + "' has no valid port");
    return ok_status();
}

Status check_host_name(const std::string& name) {
    if (!valid_host_name(name)) return bad("host_name", "'" + name.substr(0, 100) + "' is not 1-63 letters, digits, '.', '_' and '-'");
    return ok_status();
}

}  // namespace

const std::map<std::string, std::string>& config_keys() {
    static const std::map<std::string, std::string> keys = {
        {"data_dir", "where kilnd keeps kilnd.db, vms/, templates/ and snapshots/"},
        {"listen", "host:port of the REST API"},
        {"e2b_listen", "host:port of the E2B listener for E2B's SDKs (docs/e2b.md); empty: off"},
        {"store", "where records are kept: sqlite (data_dir/kilnd.db, the default) or a postgresql:// URL shared by a fleet"},
        {"fleet_secret", "the fleet's shared secret, which hosts authenticate to each other with (deprecated as a plain "
                         "key: use fleet_secret_file); a postgresql:// store needs one"},
        {"fleet_secret_file", "a file (mode 0600, owned by root) holding fleet_secret"},
        {"max_sandboxes", "live sandboxes at most (429 beyond)"},
        {"max_memory_mib", "committed guest memory of live sandboxes at most, MiB (429 beyond)"},
        {"max_ttl_seconds", "the largest ttl_seconds a create or PATCH accepts"},
        {"default_ttl_seconds", "ttl_seconds when a create gives none"},
        {"token_quota", "every token's limits unless it was made with its own: sandboxes, memory_mib, snapshots, "
                        "snapshot_mib, queued_jobs, lifetime_seconds as key=value,... (the keys given replace the defaults "
                        "64 sandboxes, 100 snapshots of 102400 MiB in all, 100 queued jobs, a 604800 s lifetime; memory: "
                        "max_memory_mib only)"},
        {"on_shutdown", "destroy | keep: what SIGTERM does to live sandboxes"},
        {"accel", "auto | kvm | tcg"},
        {"keep_spare", "start a QEMU ahead for each template (faster creates, one idle QEMU each)"},
        {"warm_spare", "with keep_spare: load and warm each template's spare ahead with Kiln's own commands, then stop "
                       "it (a faster create and first command; the spare holds the pages and translated code of its "
                       "warm-up; false: spares are QEMUs waiting for the state)"},
        {"allow_unconfined", "true: run VMs even where they cannot be jailed (not root) or QEMU's seccomp fails; "
                             "every health report then says so (default false: such VMs are refused)"},
        {"jail", "false: start QEMU without its jail even as root (the benchmarks' unjailed baseline, debugging); "
                 "needs allow_unconfined, and every health report then says so"},
        {"jail_uid_base", "first uid (and gid) of the range whose uids jailed QEMUs run as, one per VM"},
        {"jail_uid_count", "how many uids the jail range holds (VMs that can run at once)"},
        {"vm_memory_overhead_mib", "a VM's cgroup memory limit beyond its guest RAM and TCG's translation cache, MiB"},
        {"vm_memory_limit_mib", "a fixed cgroup memory limit for every VM instead of the computed one, MiB (0: computed)"},
        {"log_level", "debug | info | warn | error"},
        {"max_json_body", "bytes of a JSON request body at most"},
        {"max_upload_body", "bytes of a file or tar upload at most"},
        {"max_exec_output", "bytes of stdout, and of stderr, a buffered exec answers with at most (the rest is dropped and counted)"},
        {"agent_send_timeout_seconds", "seconds a guest has to take one frame kilnd sends it; past that the guest "
                                       "stopped reading: its VM is killed and the sandbox marked lost"},
        {"client_timeout_seconds", "a client silent this long is disconnected"},
        {"worker_threads", "HTTP request pool threads (route handlers; streams use none of them)"},
        {"max_requests_per_token", "API requests one token may have in flight at once (429 quota_exceeded beyond)"},
        {"max_streams_per_token", "streams (log follow, exec streams, downloads) one token may have open at once (429 beyond)"},
        {"github_webhook_secret", "the GitHub webhook's shared secret (X-Hub-Signature-256; deprecated: use github_webhook_secret_file)"},
        {"github_api_url", "GitHub API base for commit statuses (GitHub Enterprise: https://HOST/api/v3)"},
        {"github_token", "token that may post commit statuses (deprecated: use github_token_file)"},
        {"github_token_file", "a file (mode 0600, owned by root) holding github_token"},
        {"github_webhook_secret_file", "a file (mode 0600, owned by root) holding github_webhook_secret"},
        {"ci_secrets_dir", "a folder of CI secrets: one file (mode 0600) per secret, named after it"},
        {"ci_secrets_policy", "a file (mode 0600, owned by root) saying which repositories (and branches) each CI "
                              "secret goes to; a secret it does not name goes to no job (docs/tenants-ci.md)"},
        {"github_webhook_secrets_dir", "a folder of per-repository webhook secrets: <dir>/<owner>/<repo> (mode 0600) "
                                       "is the secret of owner/repo's deliveries, instead of github_webhook_secret"},
        {"github_repos", "the repositories the GitHub webhook accepts deliveries for, comma-separated owner/repo or "
                         "owner/*; empty: every repository (docs/github.md)"},
        {"public_url", "kilnd's URL as people reach it, for links in commit statuses"},
        {"ci_workers", "CI jobs run at once (each in its own VM)"},
        {"ci_lease_renew_seconds", "how often the host running a CI job renews the job's lease (default 3)"},
        {"ci_lease_timeout_seconds", "a CI job whose lease was not renewed for this long lost its host: another host "
                                     "queues it again, once (default 15; at least 2 x ci_lease_renew_seconds)"},
        {"ci_repos", "repository URL prefixes (comma or space separated) that jobs of non-admin tokens and webhooks may "
                     "come from, e.g. https://github.com/acme/; empty (default): only admin tokens may queue jobs"},
        {"ci_git_uid", "uid (and gid) git runs as when kilnd fetches a URL for a job (default 1999999999, a uid of its own)"},
        {"ci_repo_max_mib", "a repository's cache on kilnd's host at most, MiB: a fetch that passes it is stopped (default 2048)"},
        {"ci_git_timeout_seconds", "one git fetch of a job's code at most, seconds (ls-remote: at most 60 of them; default 600)"},
        {"ci_bakes_kept", "CI bakes (snapshots) kept; after a new bake the least recently used beyond this many are deleted"},
        {"ci_bake_min_idle_seconds", "a CI bake used within this many seconds is never deleted to make room"},
        {"min_free_disk_mib", "new work (create, fork, snapshot, CI job) is refused with 503 while the data dir's disk "
                              "has less free than this, MiB (0: no floor; see min_free_disk_percent)"},
        {"min_free_disk_percent", "the same floor as a percentage of the data dir's disk; the larger of the two applies"},
        {"ci_job_retention_days", "a finished CI job's log, artifacts and record are deleted this many days after it ended (0: kept)"},
        {"ci_jobs_max_gib", "all CI jobs' files (logs, artifacts) at most, GiB: the oldest finished jobs' files go first (0: no cap)"},
        {"ci_git_retention_days", "a git mirror under ci/git that no job fetched from for this many days is deleted (0: kept)"},
        {"ci_git_max_gib", "all git mirrors under ci/git at most, GiB: the least recently used go first (0: no cap)"},
        {"retention_interval_seconds", "how often the retention limits above are applied"},
        {"network_default", "network policy of creates that give none, as JSON: {\"mode\":\"none\"} (default), "
                            "{\"mode\":\"open\"} or {\"mode\":\"allowlist\",\"allow\":[...]}"},
        {"network_pool", "IPv4 range for the sandboxes' veth links, one /30 each (default 10.201.0.0/16)"},
        {"ci_network_trusted", "network policy (JSON) of trusted CI jobs' VMs; default {\"mode\":\"none\"}"},
        {"ci_network_untrusted", "network policy (JSON) of untrusted CI jobs (fork pull requests): none or allowlist only"},
        {"network_dns", "IPv4 resolver the guests' DNS is forwarded to (empty: the host's; none: no DNS)"},
        {"network_open_allow", "non-public destinations mode open may reach after all, comma-separated A.B.C.D[/N][:port] "
                               "(default none: open reaches the public internet only)"},
        {"network_max_connections", "connections one sandbox may have tracked at once (default 512; 0: no limit)"},
        {"network_new_connections_per_second", "new connections one sandbox may open per second (default 100; 0: no limit)"},
        {"network_new_connection_burst", "new connections one sandbox may open at once above that rate (default 200)"},
        {"host_name", "this kilnd's name in the fleet's store, unique per kilnd (default: the machine's hostname; "
                      "letters, digits, '.', '_', '-', at most 63)"},
        {"advertise_url", "the URL other hosts of the fleet reach this kilnd at (default http://<listen>)"},
        {"host_heartbeat_seconds", "how often this kilnd records that it is alive in the store (default 2)"},
        {"host_timeout_seconds", "a host whose heartbeat is older than this is dead: another host marks its live "
                                 "sandboxes lost (default 15)"},
    };
    return keys;
}

Status apply_config_value(DaemonConfig& c, const std::string& key, const std::string& value) {
    if (key == "data_dir") {
        if (value.empty() || value[0] != '/') return bad(key, "must be an absolute path");
        c.data_dir = value;
    } else if (key == "listen") {
        TRY(check_listen(key, value));
        c.listen = value;
    } else if (key == "e2b_listen") {
        if (!value.empty()) TRY(check_listen(key, value));
        c.e2b_listen = value;
    } else if (key == "max_sandboxes") {
        c.max_sandboxes = TRY(parse_int(key, value, 0, 100000));
    } else if (key == "max_memory_mib") {
        c.max_memory_mib = TRY(parse_int(key, value, 0, int64_t(1) << 40));
    } else if (key == "max_ttl_seconds") {
        c.max_ttl_seconds = TRY(parse_int(key, value, 1, int64_t(10) * 365 * 86400));
    } else if (key == "token_quota") {
        c.token_quota = with_defaults(TRY(parse_quota_list(value)), c.token_quota);
    } else if (key == "default_ttl_seconds") {
        c.default_ttl_seconds = TRY(parse_int(key, value, 1, int64_t(10) * 365 * 86400));
    } else if (key == "on_shutdown") {
        if (value == "destroy") c.on_shutdown = OnShutdown::Destroy;
        else if (value == "keep") c.on_shutdown = OnShutdown::Keep;
        else return bad(key, "'" + value + "' is not destroy or keep");
    } else if (key == "accel") {
        if (value != "auto" && value != "kvm" && value != "tcg") return bad(key, "'" + value + "' is not auto, kvm or tcg");
        c.accel = value;
    } else if (key == "keep_spare") {
        c.keep_spare = TRY(parse_bool(key, value));
    } else if (key == "warm_spare") {
        c.warm_spare = TRY(parse_bool(key, value));
    } else if (key == "allow_unconfined") {
        c.allow_unconfined = TRY(parse_bool(key, value));
    } else if (key == "jail") {
        c.jail = TRY(parse_bool(key, value));
    } else if (key == "jail_uid_base") {
        c.jail_uid_base = TRY(parse_int(key, value, 1000, int64_t(4000000000)));
    } else if (key == "jail_uid_count") {
        c.jail_uid_count = TRY(parse_int(key, value, 1, 1 << 24));
    } else if (key == "vm_memory_overhead_mib") {
        c.vm_memory_overhead_mib = TRY(parse_int(key, value, 1, 1 << 20));
    } else if (key == "vm_memory_limit_mib") {
        c.vm_memory_limit_mib = TRY(parse_int(key, value, 0, 1 << 24));
    } else if (key == "log_level") {
        if (value != "debug" && value != "info" && value != "warn" && value != "error")
            return bad(key, "'" + value + "' is not debug, info, warn or error");
        c.log_level = value;
    } else if (key == "max_json_body") {
        c.max_json_body = static_cast<size_t>(TRY(parse_int(key, value, 1024, int64_t(1) << 30)));
    } else if (key == "max_upload_body") {
        c.max_upload_body = static_cast<size_t>(TRY(parse_int(key, value, 1024, int64_t(1) << 40)));
    } else if (key == "max_exec_output") {
        c.max_exec_output = static_cast<size_t>(TRY(parse_int(key, value, 1024, int64_t(1) << 30)));
    } else if (key == "agent_send_timeout_seconds") {
        c.agent_send_timeout_seconds = static_cast<int>(TRY(parse_int(key, value, 1, 86400)));
    } else if (key == "client_timeout_seconds") {
        c.client_timeout_seconds = static_cast<int>(TRY(parse_int(key, value, 1, 3600)));
    } else if (key == "worker_threads") {
        c.worker_threads = static_cast<int>(TRY(parse_int(key, value, 1, 1024)));
    } else if (key == "max_requests_per_token") {
        c.max_requests_per_token = static_cast<int>(TRY(parse_int(key, value, 1, 100000)));
    } else if (key == "max_streams_per_token") {
        c.max_streams_per_token = static_cast<int>(TRY(parse_int(key, value, 1, 100000)));
    } else if (key == "ci_workers") {
        c.ci_workers = static_cast<int>(TRY(parse_int(key, value, 1, 64)));
    } else if (key == "ci_lease_renew_seconds") {
        c.ci_lease_renew_seconds = TRY(parse_int(key, value, 1, 3600));
    } else if (key == "ci_lease_timeout_seconds") {
        c.ci_lease_timeout_seconds = TRY(parse_int(key, value, 2, 86400));
    } else if (key == "ci_repos") {
        c.ci_repos = value;  // checked where it is used: ci::RepoAllowlist::parse, at start-up
    } else if (key == "ci_git_uid") {
        c.ci_git_uid = TRY(parse_int(key, value, 1, int64_t(4294967294)));
    } else if (key == "ci_repo_max_mib") {
        c.ci_repo_max_mib = TRY(parse_int(key, value, 1, int64_t(1) << 30));
    } else if (key == "ci_git_timeout_seconds") {
        c.ci_git_timeout_seconds = TRY(parse_int(key, value, 1, 86400));
    } else if (key == "ci_bakes_kept") {
        c.ci_bakes_kept = static_cast<int>(TRY(parse_int(key, value, 1, 100000)));
    } else if (key == "ci_bake_min_idle_seconds") {
        c.ci_bake_min_idle_seconds = TRY(parse_int(key, value, 0, int64_t(365) * 86400));
    } else if (key == "min_free_disk_mib") {
        c.min_free_disk_mib = TRY(parse_int(key, value, 0, int64_t(1) << 40));
    } else if (key == "min_free_disk_percent") {
        c.min_free_disk_percent = TRY(parse_int(key, value, 0, 99));
    } else if (key == "ci_job_retention_days" || key == "ci_git_retention_days") {
        (key == "ci_job_retention_days" ? c.ci_job_retention_days : c.ci_git_retention_days) =
            TRY(parse_int(key, value, 0, 36500));
    } else if (key == "ci_jobs_max_gib" || key == "ci_git_max_gib") {
        (key == "ci_jobs_max_gib" ? c.ci_jobs_max_gib : c.ci_git_max_gib) = TRY(parse_int(key, value, 0, int64_t(1) << 30));
    } else if (key == "retention_interval_seconds") {
        c.retention_interval_seconds = TRY(parse_int(key, value, 1, int64_t(7) * 86400));
    } else if (key == "network_default") {
        auto policy = net::parse_network_policy_text(value);
        if (!policy.ok()) return bad(key, policy.error().message);
        c.network_default = *policy;
    } else if (key == "ci_network_trusted" || key == "ci_network_untrusted") {
        auto policy = net::parse_network_policy_text(value);
        if (!policy.ok()) return bad(key, policy.error().message);
        if (key == "ci_network_untrusted" && policy->mode == net::NetworkMode::Open)
            return bad(key, "untrusted jobs (a fork's pull request) get mode none or an allowlist, never open");
        (key == "ci_network_trusted" ? c.ci_network_trusted : c.ci_network_untrusted) = *policy;
    } else if (key == "network_pool") {
        if (auto pool = net::AddressPool::create(value); !pool.ok()) return bad(key, pool.error().message);
        c.network_pool = value;
    } else if (key == "network_dns") {
        if (!value.empty() && value != "none" && !net::parse_ipv4(value).ok())
            return bad(key, "'" + value + "' is not an IPv4 address, none or empty");
        c.network_dns = value;
    } else if (key == "network_open_allow") {
        auto allow = net::parse_open_allow(value);
        if (!allow.ok()) return bad(key, allow.error().message);
        c.network_egress.open_allow = *allow;
    } else if (key == "network_max_connections") {
        c.network_egress.max_connections = static_cast<uint32_t>(TRY(parse_int(key, value, 0, 1000000)));
    } else if (key == "network_new_connections_per_second") {
        c.network_egress.new_connections_per_second = static_cast<uint32_t>(TRY(parse_int(key, value, 0, 1000000)));
    } else if (key == "network_new_connection_burst") {
        c.network_egress.new_connection_burst = static_cast<uint32_t>(TRY(parse_int(key, value, 1, 1000000)));
    } else if (key == "store") {
        if (value != "sqlite" && !is_postgres_url(value))
            return bad(key, "'" + redact_store_spec(value) + "' is neither sqlite nor a postgresql:// URL");
        c.store = value;
    } else if (key == "fleet_secret") {
        c.fleet_secret = value;
    } else if (key == "fleet_secret_file") {
        if (!value.empty() && value[0] != '/') return bad(key, "must be an absolute path");
        c.fleet_secret_file = value;
    } else if (key == "host_name") {
        TRY(check_host_name(value));
        c.host_name = value;
    } else if (key == "advertise_url") {
        if (value.rfind("http://", 0) != 0 && value.rfind("https://", 0) != 0)
            return bad(key, "must start with http:// or https://");
        c.advertise_url = value;
    } else if (key == "host_heartbeat_seconds") {
        c.host_heartbeat_seconds = TRY(parse_int(key, value, 1, 3600));
    } else if (key == "host_timeout_seconds") {
        c.host_timeout_seconds = TRY(parse_int(key, value, 2, 86400));
    } else if (key == "github_webhook_secret") {
        c.github_webhook_secret = value;
    } else if (key == "github_token") {
        c.github_token = value;
    } else if (key == "github_webhook_secret_file" || key == "github_token_file" || key == "ci_secrets_dir" ||
               key == "ci_secrets_policy" || key == "github_webhook_secrets_dir") {
        if (!value.empty() && value[0] != '/') return bad(key, "must be an absolute path");
        (key == "ci_secrets_dir"               ? c.ci_secrets_dir
         : key == "ci_secrets_policy"          ? c.ci_secrets_policy
         : key == "github_webhook_secrets_dir" ? c.github_webhook_secrets_dir
         : key == "github_token_file"          ? c.github_token_file
                                               : c.github_webhook_secret_file) = value;
    } else if (key == "github_repos") {
        for (size_t pos = 0; pos <= value.size();) {
            size_t comma = std::min(value.find(',', pos), value.size());
            std::string entry = value.substr(pos, comma - pos);
            size_t slash = entry.find('/');
            if (!entry.empty() && (slash == std::string::npos || slash == 0 || slash + 1 == entry.size() ||
                                   entry.find('/', slash + 1) != std::string::npos))
                return bad(key, "'" + entry.substr(0, 100) + "' is not owner/repo or owner/*");
            pos = comma + 1;
        }
        c.github_repos = value;
    } else if (key == "github_api_url" || key == "public_url") {
        if (value.rfind("http://", 0) != 0 && value.rfind("https://", 0) != 0)
            return bad(key, "must start with http:// or https://");
        (key == "public_url" ? c.public_url : c.github_api_url) = value;
    } else {
        return make_error(ErrorCode::InvalidArgument, "unknown config key '" + key + "'");
    }
    return ok_status();
}

Result<std::map<std::string, std::string>> parse_config_text(const std::string& text) {
    std::map<std::string, std::string> out;
    std::string t = trim(text);
    if (!t.empty() && t[0] == '{') {
        auto j = nlohmann::json::parse(t, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded() || !j.is_object()) return make_error(ErrorCode::InvalidArgument, "config file: not a JSON object");
        for (auto it = j.begin(); it != j.end(); ++it) {
            const auto& v = it.value();
            if (v.is_string()) out[it.key()] = v.get<std::string>();
            else if (v.is_number_integer() || v.is_boolean()) out[it.key()] = v.dump();
            else if (v.is_array() && std::all_of(v.begin(), v.end(), [](const auto& e) { return e.is_string(); })) {
                // A list key (network_open_allow) as JSON reads it: the comma-separated form it
                // has in key=value files and the environment.
                std::string joined;
                for (const auto& e : v) joined += (joined.empty() ? "" : ",") + e.get<std::string>();
                out[it.key()] = joined;
            } else return bad(it.key(), "must be a string, an integer, a boolean or a list of strings");
        }
    } else {
        size_t line_no = 0, pos = 0;
        while (pos <= text.size()) {
            size_t nl = text.find('\n', pos);
            std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
            pos = nl == std::string::npos ? text.size() + 1 : nl + 1;
            ++line_no;
            line = trim(line);
            if (line.empty() || line[0] == '#') continue;
            auto eq = line.find('=');
            if (eq == std::string::npos)
                return make_error(ErrorCode::InvalidArgument, "config file line " + std::to_string(line_no) + ": expected key=value");
            out[trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
        }
    }
    for (const auto& [key, value] : out) {
        if (!config_keys().count(key)) return make_error(ErrorCode::InvalidArgument, "config file: unknown key '" + key + "'");
    }
    return out;
}

std::map<std::string, std::string> config_from_env(char** envp) {
    std::map<std::string, std::string> out;
    if (!envp) return out;
    for (const auto& [key, description] : config_keys()) {
        std::string name = "KILN_";
        for (char ch : key) name += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        for (char** e = envp; *e; ++e) {
            if (std::strncmp(*e, name.c_str(), name.size()) == 0 && (*e)[name.size()] == '=') {
                out[key] = std::string(*e + name.size() + 1);
            }
        }
    }
    return out;
}

Status validate_config(const DaemonConfig& c) {
    if (c.jail_uid_base + c.jail_uid_count > int64_t(4294967294))
        return make_error(ErrorCode::InvalidArgument, "config: jail_uid_base + jail_uid_count passes the largest uid");
    if (c.ci_git_uid >= c.jail_uid_base && c.ci_git_uid < c.jail_uid_base + c.jail_uid_count)
        return make_error(ErrorCode::InvalidArgument, "config: ci_git_uid is inside the jail's uid range (jail_uid_base, "
                                                      "jail_uid_count): git and the VMs must not share a uid");
    if (c.host_timeout_seconds <= c.host_heartbeat_seconds)
        return make_error(ErrorCode::InvalidArgument, "config: host_timeout_seconds must be above host_heartbeat_seconds "
                                                      "(a live host would be judged dead between two heartbeats)");
    if (c.default_ttl_seconds > c.max_ttl_seconds)
        return make_error(ErrorCode::InvalidArgument, "config: default_ttl_seconds (" + std::to_string(c.default_ttl_seconds) +
                                                  ") is above max_ttl_seconds (" + std::to_string(c.max_ttl_seconds) + ")");
    // A lease must outlive a missed renewal or two, or a busy host loses jobs it still runs.
    if (c.ci_lease_timeout_seconds < 2 * c.ci_lease_renew_seconds)
        return make_error(ErrorCode::InvalidArgument, "config: ci_lease_timeout_seconds (" + std::to_string(c.ci_lease_timeout_seconds) +
                                                  ") must be at least twice ci_lease_renew_seconds (" +
                                                  std::to_string(c.ci_lease_renew_seconds) + ")");
    return ok_status();
}

std::string store_spec(const DaemonConfig& c) { return c.store == "sqlite" ? c.data_dir + "/kilnd.db" : c.store; }
Status resolve_host_identity(DaemonConfig& c) {
    if (c.host_name.empty()) {
        char name[256] = {};
        if (::gethostname(name, sizeof name - 1) != 0) return make_error(ErrorCode::Internal, "gethostname failed; set host_name");
        // The first label only: a short name that stays a valid host_name.
        std::string host = name;
        host = host.substr(0, host.find('.'));
        if (auto st = check_host_name(host); !st.ok())
            return make_error(ErrorCode::InvalidArgument, "the machine's hostname '" + host + "' is no host_name: set host_name");
        c.host_name = host;
    }
    if (c.advertise_url.empty()) c.advertise_url = "http://" + c.listen;
    return ok_status();
}

Result<DaemonConfig> load_config(const std::string& file_path, char** envp,
                                 const std::map<std::string, std::string>& flags) {
    DaemonConfig config;
    if (!file_path.empty()) {
        auto text = read_file(file_path, 1 << 20);
        if (!text.ok()) return make_error(ErrorCode::InvalidArgument, "config file " + file_path + ": " + text.error().message);
        auto pairs = parse_config_text(*text);
        if (!pairs.ok()) return make_error(ErrorCode::InvalidArgument, file_path + ": " + pairs.error().message);
        for (const auto& [k, v] : *pairs) TRY(apply_config_value(config, k, v));
    }
    for (const auto& [k, v] : config_from_env(envp)) {
        if (auto st = apply_config_value(config, k, v); !st.ok())
            return make_error(ErrorCode::InvalidArgument, "environment: " + st.error().message);
    }
    for (const auto& [k, v] : flags) {
        if (auto st = apply_config_value(config, k, v); !st.ok())
            return make_error(ErrorCode::InvalidArgument, "flag: " + st.error().message);
    }
    TRY(validate_config(config));
    return config;
}

}  // namespace kiln::daemon
