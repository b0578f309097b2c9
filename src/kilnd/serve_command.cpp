// `kilnd serve`: builds the daemon in one visible order and runs it until SIGTERM/SIGINT.
#include "kilnd/serve_command.h"

#include <signal.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <thread>

#include "base/clock.h"
#include "base/db.h"
#include "base/json_log.h"
#include "base/random.h"
#include "base/sha256.h"
#include "ci/github/delivery_log.h"
#include "ci/github/github_webhook.h"
#include "ci/jobs/local_job_service.h"
#include "daemon/auth/session_store.h"
#include "daemon/auth/token_store.h"
#include "daemon/config.h"
#include "daemon/data_dir.h"
#include "daemon/disk_guard.h"
#include "daemon/fleet/host_registry.h"
#include "daemon/secrets.h"
#include "daemon/sandboxes/ids.h"
#include "daemon/sandboxes/local_sandbox_service.h"
#include "daemon/sandboxes/reconcile.h"
#include "daemon/store/db_store.h"
#include "daemon/templates/template_baker.h"
#include "kilnd/e2b/e2b_listener.h"
#include "kilnd/http/fleet_gateway.h"
#include "kilnd/http/http_server.h"
#include "kilnd/kilnd_db.h"
#include "kilnd/metrics.h"
#include "vm/accel.h"
#include "vm/jail/jail_settings.h"
#include "vm/jail/vm_cgroups.h"
#include "vm/spare_pool.h"

#ifndef KILN_VERSION
#define KILN_VERSION "dev"
#endif

namespace kiln::daemon {
namespace {

// The token that owns CI job VMs and bakes: made once, never shown (only its hash of random
// bytes is stored, so nobody can present it).
Result<Caller> ci_caller(Store& store) {
    static constexpr const char* kName = "kilnd-ci-internal";
    // Admin, with no quota of its own: CI's own limits (ci_workers) bound what it runs, and the
    // jobs' submitters are held to their queued_jobs quota.
    constexpr ScopeSet kAdmin = static_cast<ScopeSet>(Scope::Admin);
    for (const auto& t : TRY(store.list_tokens()))
        if (t.name == kName) return Caller{t.id, t.name, kAdmin, {}};
    std::string hash = sha256_hex(TRY(random_bytes(32)));
    int64_t id = TRY(store.insert_token(TokenSpec{kName, kAdmin, {}}, hash, now_unix_ms()));
    return Caller{id, kName, kAdmin, {}};
}

int fail(const std::string& what, const Error& e) {
    log::error(what, {{"error", e.to_string()}});
    return 1;
}

// Config, log level and data dir: what every command needs first.
Result<DaemonConfig> load(const CommandContext& ctx) {
    auto config = TRY(load_config(ctx.config_file, ctx.envp, ctx.flags));
    log::Level level;
    if (log::parse_level(config.log_level, &level)) log::set_level(level);
    config.data_dir = TRY(prepare_data_dir(config.data_dir));
    return config;
}

// The token commands' store: the configured store (kilnd.db or the fleet's PostgreSQL), migrated
// as serve migrates it. Null once it has logged why not (the config, or the store).
std::unique_ptr<DbStore> open_token_store(const CommandContext& ctx) {
    auto config = load(ctx);
    if (!config.ok()) {
        fail("config", config.error());
        return nullptr;
    }
    auto db = open_kilnd_db(store_spec(*config));
    if (!db.ok()) {
        fail("store", db.error());
        return nullptr;
    }
    return std::make_unique<DbStore>(std::move(*db));
}

}  // namespace

int run_serve(const CommandContext& ctx) {
    // Signals go to one thread (below), never to the threads started from here on.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    // 1. config  2. data dir
    auto config = load(ctx);
    if (!config.ok()) return fail("config", config.error());
    if (auto st = resolve_host_identity(*config); !st.ok()) return fail("config", st.error());
    // Secrets: read once here, from files (or, deprecated, the environment); only their sources
    // are logged. Nothing kilnd spawns gets its environment (base/child_process.h).
    auto secrets = load_secrets(*config, ctx.envp);
    if (!secrets.ok()) return fail("secrets", secrets.error());
    for (const auto& [name, source] : secrets->sources) log::info("secret loaded", {{"secret", name}, {"from", source}});
    for (const auto& variable : secrets->from_environment)
        log::warn("secret from the environment (deprecated: use a file, see docs/kilnd.md)", {{"variable", variable}});
    // A shared store makes a fleet, whose hosts talk to each other: only with the fleet's secret.
    if (is_postgres_url(config->store) && secrets->fleet_secret.empty())
        return fail("config", make_error(ErrorCode::InvalidArgument,
                                         "store is a postgresql:// URL (a fleet's shared store), which needs the fleet "
                                         "secret: set fleet_secret_file (or KILN_FLEET_SECRET, or the fleet_secret credential)"));
    auto accel_mode = vm::parse_accel_mode(config->accel);
    if (!accel_mode.ok()) return fail("config", accel_mode.error());
    auto accel = vm::choose_accel(*accel_mode);
    if (!accel.ok()) return fail("accelerator", accel.error());
    log::info("starting", {{"version", KILN_VERSION}, {"host", config->host_name}, {"data_dir", config->data_dir},
                           {"store", redact_store_spec(config->store)}, {"accel", vm::accel_name(accel->accel)},
                           {"accel_reason", accel->reason}, {"max_sandboxes", config->max_sandboxes},
                           {"max_memory_mib", config->max_memory_mib}, {"max_ttl_seconds", config->max_ttl_seconds}});

    // 3. store: kilnd.db (or the fleet's PostgreSQL) opened once, every module's migrations run,
    //    one connection for the daemon's store, CI's jobs and GitHub's deliveries  4. reconcile
    //    (before anything of ours starts a QEMU)
    auto db = open_kilnd_db(store_spec(*config));
    if (!db.ok()) return fail("store", db.error());
    // The VM jail's settings, before anything starts a QEMU (docs/security.md).
    vm::jail::JailSettings jail = vm::jail::jail_settings();
    jail.allow_unconfined = config->allow_unconfined;
    jail.jail = config->jail;
    jail.uids = {static_cast<uid_t>(config->jail_uid_base), static_cast<uint32_t>(config->jail_uid_count)};
    jail.memory_overhead_mib = static_cast<uint32_t>(config->vm_memory_overhead_mib);
    jail.memory_limit_mib = static_cast<uint32_t>(config->vm_memory_limit_mib);
    vm::jail::set_jail_settings(jail);
    if (auto c = vm::jail::confinement(); !c.problem.empty()) log::warn("VM confinement", {{"problem", c.problem}});
    DbStore store(*db);
    // This kilnd as a host of the fleet (a one-host fleet on SQLite): registered before the
    // reconcile, which claims the rows from before hosts existed and then sweeps only this host's.
    // Its hooks reach the sandbox service once that exists (the heartbeat starts after it).
    LocalSandboxService* service_for_registry = nullptr;
    HostRegistryConfig registry_config;
    registry_config.self = HostSpec{config->host_name, config->advertise_url, config->max_sandboxes,
                                    static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency())),
                                    config->max_memory_mib, vm::accel_name(accel->accel), KILN_VERSION, config->data_dir};
    registry_config.heartbeat = Millis(config->host_heartbeat_seconds * 1000);
    registry_config.timeout = Millis(config->host_timeout_seconds * 1000);
    HostRegistryHooks registry_hooks;
    registry_hooks.live_ids = [&service_for_registry] {
        return service_for_registry ? service_for_registry->live_ids() : std::vector<std::string>{};
    };
    registry_hooks.fence = [&service_for_registry](const std::vector<std::string>& ids) {
        if (service_for_registry) service_for_registry->fence(ids);
    };
    if (config->advertise_url.find("://0.0.0.0") != std::string::npos || config->advertise_url.find("://[::]") != std::string::npos)
        log::warn("advertise_url names no address another host can reach: set advertise_url (docs/fleet.md)",
                  {{"advertise_url", config->advertise_url}});
    HostRegistry registry(*db, registry_config, registry_hooks);
    if (auto st = registry.register_self(); !st.ok()) return fail("host registry", st.error());
    if (auto r = reconcile(store, config->data_dir, config->host_name); !r.ok()) return fail("reconcile", r.error());
    // The cgroups of this data dir's VMs that a crash left (their QEMUs were killed just above;
    // anything still in them is killed now). Other kilnds' VMs carry other prefixes.
    if (auto swept = vm::jail::sweep_vm_cgroups(); swept.ok()) {
        if (*swept > 0) log::info("VM cgroups swept", {{"removed", *swept}});
    } else {
        log::warn("VM cgroups not swept", {{"error", swept.error().message}});
    }

    // 5. metrics  6. spare pool and service  7. template bake (background)
    Metrics metrics(vm::accel_name(accel->accel));
    // Sandbox networks: the host side is set up on the first sandbox with a NIC (docs/network.md).
    net::NetworkConfig network_config;
    network_config.pool = config->network_pool;
    network_config.dns_resolver = config->network_dns;
    network_config.egress = config->network_egress;
    // One host table per pool: a second kilnd on another pool must not replace the first's rules.
    if (config->network_pool != net::NetworkConfig{}.pool)
        network_config.host_table = "kiln_" + sha256_hex(config->network_pool).substr(0, 8);
    net::LazyNetworkManager networks(network_config);
    // Spare QEMUs (keep_spare): the bakes start them, restores and forks take them. Declared before
    // the baker and the service, so it is destroyed after them, killing any spare still waiting.
    // The networks of spares for templates with a NIC: made ahead, named spare-<tag>-* so that the
    // reconcile above sweeps the ones a crash left (docs/network.md).
    net::SpareNetworks spare_networks(networks, config->data_dir);
    std::optional<vm::SparePool> spare_pool;
    if (config->keep_spare) spare_pool.emplace(config->warm_spare);
    vm::SparePool* spares = spare_pool ? &*spare_pool : nullptr;
    TemplateBaker baker(config->data_dir + "/templates", *accel_mode, spares, &networks, &spare_networks);
    ServiceConfig service_config{config->data_dir, config->max_sandboxes, config->max_memory_mib,
                                 config->max_ttl_seconds, config->default_ttl_seconds, spares,
                                 &networks, config->network_default, &spare_networks};
    service_config.agent_send_timeout = std::chrono::seconds(config->agent_send_timeout_seconds);
    service_config.private_allow = config->network_egress.open_allow;
    // The free-space floor for new work (docs/kilnd.md, "Disk").
    const DiskGuard disk(config->data_dir, DiskFloor{static_cast<uint64_t>(config->min_free_disk_mib) << 20,
                                                     static_cast<uint32_t>(config->min_free_disk_percent)});
    service_config.disk = &disk;
    service_config.host_name = config->host_name;
    service_config.accepting = [&registry] { return registry.check_accepting(); };
    ServiceHooks hooks;
    hooks.created = [&metrics](double ms) { metrics.observe_create_ms(ms); };
    hooks.create_failed = [&metrics](bool restore_failed) {
        metrics.count_create_failure();
        if (restore_failed) metrics.count_restore_failure();
    };
    LocalSandboxService service(service_config, store, baker, hooks);
    service_for_registry = &service;
    // On every way out the heartbeat stops before the service goes (its hooks call the service).
    struct StopRegistry {
        HostRegistry& registry;
        ~StopRegistry() { registry.stop(); }
    } stop_registry{registry};
    registry.start();
    TokenStore tokens(store, config->token_quota);
    // The dashboard's sign-in sessions (table ui_sessions); also what checks bearer tokens.
    SessionStore sessions(*db, tokens);
    // A bake writes a snapshot: not on a nearly full disk (the first create bakes it later).
    for (const auto& t : baker.builtins())
        if (t.bake_at_start && disk.check("bake a template").ok()) baker.bake_in_background(t.name);

    // 7b. CI jobs: the queue; start() below sweeps what interrupted jobs left and runs its
    // reconcile (jobs a crash left running are queued again once; the sandbox reconcile above
    // already killed their VMs), then the workers and the retention pruner.
    auto ci_owner = ci_caller(store);
    if (!ci_owner.ok()) return fail("ci", ci_owner.error());
    ci::JobServiceConfig jobs_config;
    jobs_config.runner.jobs_dir = config->data_dir + "/jobs";
    jobs_config.runner.caller = *ci_owner;
    jobs_config.runner.secrets = secrets->ci;
    {
        std::vector<std::string> configured;
        for (const auto& [name, value] : secrets->ci) configured.push_back(name);
        auto policy = ci::load_secret_policy(config->ci_secrets_policy, configured);
        if (!policy.ok()) return fail("ci_secrets_policy", policy.error());
        jobs_config.runner.secret_policy = std::move(*policy);
    }
    jobs_config.runner.max_ttl_seconds = config->max_ttl_seconds;
    jobs_config.runner.trusted_network = config->ci_network_trusted;
    jobs_config.runner.bakes_kept = config->ci_bakes_kept;
    jobs_config.runner.bake_min_idle_ms = config->ci_bake_min_idle_seconds * 1000;
    jobs_config.runner.untrusted_network = config->ci_network_untrusted;
    jobs_config.workers = config->ci_workers;
    jobs_config.host = config->host_name;  // filled in by resolve_host_identity; the leases' holder
    jobs_config.lease_renew_ms = config->ci_lease_renew_seconds * 1000;
    jobs_config.lease_timeout_ms = config->ci_lease_timeout_seconds * 1000;
    // A fleet's workers wake on any host's NOTIFY (a job queued through another host).
    if (is_postgres_url(config->store)) jobs_config.listen_url = config->store;
    jobs_config.git.dir = config->data_dir + "/ci/git";
    jobs_config.git.max_repo_bytes = uint64_t(config->ci_repo_max_mib) << 20;
    jobs_config.git.fetch_timeout = Millis(config->ci_git_timeout_seconds * 1000);
    jobs_config.git.quick_timeout = Millis(std::min<int64_t>(config->ci_git_timeout_seconds, 60) * 1000);
    if (::geteuid() == 0) {
        jobs_config.git.git_uid = static_cast<uid_t>(config->ci_git_uid);
        jobs_config.git.git_gid = static_cast<gid_t>(config->ci_git_uid);
    } else {
        log::warn("ci: kilnd is not root, so git fetches job code as kilnd's own user (ci_git_uid is not used)", {});
    }
    auto repos = ci::RepoAllowlist::parse(config->ci_repos);
    if (!repos.ok()) return fail("config", repos.error());
    jobs_config.repos = *repos;
    if (repos->empty())
        log::info("ci: ci_repos is empty: only admin tokens may queue jobs (webhook jobs are refused)", {});
    jobs_config.disk = &disk;
    constexpr int64_t kDayMs = 86400 * 1000;
    jobs_config.retention = {config->ci_job_retention_days * kDayMs, static_cast<uint64_t>(config->ci_jobs_max_gib) << 30,
                             config->ci_git_retention_days * kDayMs, static_cast<uint64_t>(config->ci_git_max_gib) << 30,
                             config->retention_interval_seconds * 1000};
    auto job_store = ci::JobStore::open(*db);
    if (!job_store.ok()) return fail("ci", job_store.error());
    auto jobs = ci::LocalJobService::create(jobs_config, service, std::move(*job_store));
    if (!jobs.ok()) return fail("ci", jobs.error());

    // 7c. GitHub webhooks over the queue (docs/github.md); the delivery log is a table in kilnd.db.
    ci::github::GithubConfig github_config{secrets->github_webhook_secret, config->github_api_url, secrets->github_token,
                                           config->public_url.empty() ? "http://" + config->listen : config->public_url};
    github_config.repo_webhook_secrets = secrets->github_repo_webhook_secrets;
    github_config.repos = ci::github::parse_repo_allowlist(config->github_repos);
    auto deliveries = ci::github::DeliveryLog::open(*db);
    if (!deliveries.ok()) return fail("github", deliveries.error());
    auto github = ci::github::GithubWebhook::create(github_config, **jobs, std::move(*deliveries));
    if (!github.ok()) return fail("github", github.error());
    // Started once every listener is in place, so the reconcile's state changes reach them too.
    if (auto st = (*jobs)->start(); !st.ok()) return fail("ci", st.error());

    // 8. HTTP
    HttpConfig http;
    http.jobs = jobs->get();
    http.github_webhook = github->get();
    http.listen = config->listen;
    http.max_json_body = config->max_json_body;
    http.max_upload_body = config->max_upload_body;
    http.max_exec_output = config->max_exec_output;
    http.client_timeout_seconds = config->client_timeout_seconds;
    http.worker_threads = config->worker_threads;
    http.max_requests_per_token = config->max_requests_per_token;
    http.max_streams_per_token = config->max_streams_per_token;
    http.version = KILN_VERSION;
    http.accel = vm::accel_name(accel->accel);
    http.disk = &disk;
    http.public_url = config->public_url;
    http.sessions = &sessions;
    http.hosts = &registry;
    FleetGateway fleet_gateway(FleetConfig{config->data_dir, config->host_name, secrets->fleet_secret}, registry, store, tokens, service);
    http.fleet = &fleet_gateway;
    auto server = HttpServer::create(http, service, sessions, metrics);
    if (!server.ok()) return fail("http", server.error());
    if (auto st = (*server)->bind(); !st.ok()) {
        service.shutdown(true);
        return fail("http bind", st.error());
    }
    std::string host = config->listen.substr(0, config->listen.rfind(':'));
    log::info("listening", {{"host", host}, {"port", (*server)->port()}});

    // 8b. The E2B listener (docs/e2b.md), when configured: the same server speaking E2B's API.
    std::unique_ptr<HttpServer> e2b_server;
    if (!config->e2b_listen.empty()) {
        HttpConfig e2b_http = http;
        e2b_http.listen = config->e2b_listen;
        auto created = e2b::create_e2b_listener(e2b_http, config->data_dir, service, tokens, metrics);
        if (!created.ok()) {
            service.shutdown(true);
            return fail("e2b listener", created.error());
        }
        if (auto st = (*created)->bind(); !st.ok()) {
            service.shutdown(true);
            return fail("e2b listener bind", st.error());
        }
        e2b_server = std::move(*created);
        log::info("listening", {{"listener", "e2b"},
                                {"host", config->e2b_listen.substr(0, config->e2b_listen.rfind(':'))},
                                {"port", e2b_server->port()}});
    }
    std::thread e2b_thread;
    if (e2b_server)
        e2b_thread = std::thread([srv = e2b_server.get()] {
            if (auto st = srv->serve(); !st.ok()) {
                log::error("e2b listener serve", {{"error", st.error().to_string()}});
                ::kill(::getpid(), SIGTERM);
            }
        });

    HttpServer* srv = server->get();
    std::thread signal_thread([&signals, srv, e2b = e2b_server.get()] {
        int sig = 0;
        sigwait(&signals, &sig);
        log::info("stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "other"}});
        srv->stop();
        if (e2b) e2b->stop();
    });
    auto served = (*server)->serve();
    if (!served.ok()) {
        log::error("http serve", {{"error", served.error().to_string()}});
        ::kill(::getpid(), SIGTERM);  // lets the signal thread end
    }
    signal_thread.join();
    if (e2b_thread.joinable()) e2b_thread.join();
    e2b_server.reset();

    // Stop accepting (done), then a bake in progress (creates waiting for it fail at once), then
    // the sandboxes as configured, then the store.
    server->reset();
    (*jobs)->stop();  // running jobs end as error, their VMs destroyed
    baker.stop();
    service.shutdown(config->on_shutdown == OnShutdown::Destroy);
    // Heartbeats until its sandboxes are ended above, then records the stop: dead at once, so no
    // host waits out the timeout (with on_shutdown keep they are lost then, as on a restart).
    registry.stop();
    service_for_registry = nullptr;
    store.close();  // the shared connection: every store on it is done by now
    log::info("stopped", {});
    return served.ok() ? 0 : 1;
}

int run_token_create(const CommandContext& ctx, const TokenCreateOptions& options, bool json) {
    auto scopes = parse_scope_list(options.scopes);
    if (!scopes.ok()) return fail("token create: --scope", scopes.error());
    TokenQuota quota;
    if (!options.quota.empty()) {
        auto parsed = parse_quota_list(options.quota);
        if (!parsed.ok()) return fail("token create: --quota", parsed.error());
        quota = *parsed;
    }
    auto store = open_token_store(ctx);
    if (!store) return 1;
    TokenStore tokens(*store);
    auto token = tokens.create(TokenSpec{options.name, *scopes, quota}, options.e2b ? TokenForm::E2b : TokenForm::Kiln);
    if (!token.ok()) return fail("token create", token.error());
    // The token goes to stdout once and nowhere else (never to the log).
    if (json) {
        nlohmann::json j = {{"id", token->id}, {"name", token->name}, {"scopes", scope_names(token->scopes)},
                            {"token", token->token}};
        std::printf("%s\n", j.dump().c_str());
    } else {
        std::printf("%s\n", token->token.c_str());
    }
    std::fflush(stdout);
    log::info("token created", {{"token_id", token->id}, {"name", token->name}, {"scopes", scope_list(token->scopes)}});
    store->close();
    return 0;
}

int run_token_list(const CommandContext& ctx, bool json) {
    auto store = open_token_store(ctx);
    if (!store) return 1;
    auto list = store->list_tokens();
    if (!list.ok()) return fail("token list", list.error());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& t : *list) {
        if (json)
            out.push_back({{"id", t.id}, {"name", t.name}, {"scopes", scope_names(t.scopes)},
                           {"quota", nlohmann::json::parse(quota_json(t.quota))},
                           {"created_at", log::rfc3339_ms(t.created_at_ms)}, {"revoked", t.revoked}});
        else std::printf("%-6lld %-24s %-40s %s%s\n", static_cast<long long>(t.id), t.name.c_str(),
                         scope_list(t.scopes).c_str(), log::rfc3339_ms(t.created_at_ms).c_str(), t.revoked ? "  revoked" : "");
    }
    if (json) std::printf("%s\n", out.dump().c_str());
    return 0;
}

int run_token_revoke(const CommandContext& ctx, const std::string& id_or_name) {
    auto store = open_token_store(ctx);
    if (!store) return 1;
    TokenStore tokens(*store);
    if (auto st = tokens.revoke(id_or_name); !st.ok()) return fail("token revoke", st.error());
    // Never echo something shaped like a token into the log, even one pasted here by mistake.
    bool looks_like_token = id_or_name.rfind(kTokenPrefix, 0) == 0 || id_or_name.rfind(kE2bTokenPrefix, 0) == 0;
    log::info("token revoked", {{"id_or_name", looks_like_token ? std::string("(redacted)") : id_or_name}});
    return 0;
}

}  // namespace kiln::daemon
