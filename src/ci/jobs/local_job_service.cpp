// LocalJobService: queue, workers, watchdog and reconcile (see local_job_service.h).
#include "ci/jobs/local_job_service.h"

#include <algorithm>
#include <set>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/json_log.h"
#include "base/random.h"
#include "ci/jobs/job_log.h"
#include "ci/jobs/job_state.h"
#include "daemon/sandboxes/ids.h"

namespace kiln::ci {


constexpr int64_t kCapGraceMs = 1500;

LocalJobService::LocalJobService(JobServiceConfig config, daemon::SandboxService& service, std::unique_ptr<JobStore> store)
    : m_config(std::move(config)),
      m_service(service),
      m_store(std::move(store)),
      m_git(m_config.git),
      m_runner(m_config.runner, service, *m_store, m_git) {}

Result<std::unique_ptr<LocalJobService>> LocalJobService::create(JobServiceConfig config, daemon::SandboxService& service,
                                                                 std::unique_ptr<JobStore> store) {
    TRY(make_dirs(config.runner.jobs_dir, 0700));
    return std::unique_ptr<LocalJobService>(new LocalJobService(std::move(config), service, std::move(store)));
}

LocalJobService::~LocalJobService() { stop(); }

Status LocalJobService::start() {
    auto failed = TRY(m_store->fail_running(now_unix_ms()));
    for (const auto& id : failed) {
        log::warn("ci: job was running when kilnd stopped; recorded as error", {{"job", id}});
        if (auto j = m_store->get(id); j.ok() && *j) {
            if (auto l = JobLog::open(m_runner.log_path(id)); l.ok())
                (*l)->event({{"type", "end"}, {"state", "error"}, {"message", (*j)->error}});
            notify(**j);
        }
    }
    m_runner.collect_bakes();
    std::lock_guard lock(m_mutex);
    int n = std::max(1, m_config.workers);
    for (int i = 0; i < n; ++i) m_threads.emplace_back([this] { worker_loop(); });
    m_threads.emplace_back([this] { watchdog_loop(); });
    log::info("ci: job workers started", {{"workers", n}});
    return ok_status();
}

void LocalJobService::stop() {
    std::vector<std::thread> threads;
    {
        std::lock_guard lock(m_mutex);
        if (m_stopping && m_threads.empty()) return;
        m_stopping = true;
        for (auto& [id, c] : m_active) c->cancel = true;
        threads.swap(m_threads);
    }
    m_wake.notify_all();
    for (auto& t : threads)
        if (t.joinable()) t.join();
}

void LocalJobService::on_state_change(std::function<void(const JobInfo&)> listener) {
    std::lock_guard lock(m_mutex);
    m_listeners.push_back(std::move(listener));
}

void LocalJobService::notify(const JobInfo& job) {
    std::vector<std::function<void(const JobInfo&)>> listeners;
    {
        std::lock_guard lock(m_mutex);
        listeners = m_listeners;
    }
    for (auto& l : listeners) l(job);
}

Result<JobInfo> LocalJobService::submit(const JobSpec& spec) {
    JobInfo job;
    job.spec = spec;
    job.spec.secrets.clear();
    // What is checked here is what the worker fetches: the canonical spelling is what is stored.
    job.spec.repo = TRY(normalize_repo(spec.repo));
    if (!spec.any_repo) {
        if (is_local_repo(job.spec.repo) && !m_config.repos.allows(job.spec.repo))
            return make_error(ErrorCode::Forbidden, "repo: a local path on kilnd's host needs the admin scope; give a git URL");
        if (m_config.repos.empty())
            return make_error(ErrorCode::Forbidden, "repo: this kilnd has no ci_repos (the repository prefixes jobs may come "
                                                    "from), so only an admin token may queue a job");
        if (!m_config.repos.allows(job.spec.repo))
            return make_error(ErrorCode::Forbidden, "repo: " + job.spec.repo.substr(0, 300) +
                                                        " is not under any of this kilnd's ci_repos prefixes");
    }
    if (!spec.sha.empty()) {
        if (!is_full_sha(spec.sha)) return make_error(ErrorCode::InvalidArgument, "sha must be a full commit id: 40 lowercase hex digits");
        if (!spec.ref.empty()) TRY(validate_ref(spec.ref));
        job.sha = spec.sha;
    } else {
        // Resolved by the worker that claims the job (resolve_sha): git here would hold an HTTP
        // thread for as long as the repository's server takes. The record's sha is "" until then.
        job.spec.ref = spec.ref.empty() ? "HEAD" : spec.ref;
        TRY(validate_ref(job.spec.ref));
    }
    if (job.spec.source.empty()) job.spec.source = "cli";
    job.id = "job-" + TRY(random_hex(6));
    job.state = JobState::Queued;
    job.created_at_ms = now_unix_ms();
    {
        std::lock_guard lock(m_mutex);
        if (m_stopping) return make_error(ErrorCode::Unavailable, "kilnd is shutting down");
        if (!spec.secrets.empty()) m_secrets[job.id] = spec.secrets;
    }
    if (auto st = m_store->insert(job); !st.ok()) {
        std::lock_guard lock(m_mutex);
        m_secrets.erase(job.id);
        return make_error(ErrorCode::Internal, "store: " + st.error().message);
    }
    log::info("ci: job queued", {{"job", job.id}, {"repo", job.spec.repo}, {"sha", job.sha}, {"source", job.spec.source},
                                 {"trusted", job.spec.trusted}});
    notify(job);
    m_wake.notify_all();
    return job;
}

Result<JobInfo> LocalJobService::get(const std::string& id) {
    auto j = m_store->get(id);
    if (!j.ok()) return make_error(ErrorCode::Internal, "store: " + j.error().message);
    if (!*j) return make_error(ErrorCode::NotFound, "no job '" + id.substr(0, 80) + "'");
    return std::move(**j);
}

Result<std::vector<JobInfo>> LocalJobService::list(int limit, int64_t owner_token_id) {
    auto l = m_store->list(std::clamp(limit, 1, 1000), owner_token_id);
    if (!l.ok()) return make_error(ErrorCode::Internal, "store: " + l.error().message);
    return std::move(*l);
}

Result<int64_t> LocalJobService::unfinished_jobs(int64_t owner_token_id) {
    auto n = m_store->count_unfinished(owner_token_id);
    if (!n.ok()) return make_error(ErrorCode::Internal, "store: " + n.error().message);
    return *n;
}

Status LocalJobService::cancel(const std::string& id) {
    std::unique_lock lock(m_mutex);
    if (auto it = m_active.find(id); it != m_active.end()) {
        it->second->cancel = true;  // the watchdog destroys the VM; the worker records the state
        lock.unlock();
        m_wake.notify_all();
        return ok_status();
    }
    // Queued (or finished): decided under the lock, so a worker cannot claim it meanwhile.
    auto j = m_store->get(id);
    if (!j.ok()) return make_error(ErrorCode::Internal, "store: " + j.error().message);
    if (!*j) return make_error(ErrorCode::NotFound, "no job '" + id.substr(0, 80) + "'");
    JobInfo job = **j;
    if (job.state != JobState::Queued) return ok_status();  // finished: nothing to do
    job.state = JobState::Cancelled;
    job.error = "cancelled before it started";
    job.finished_at_ms = now_unix_ms();
    if (auto st = m_store->update(job); !st.ok()) return make_error(ErrorCode::Internal, "store: " + st.error().message);
    m_secrets.erase(id);
    lock.unlock();
    (void)make_dirs(m_config.runner.jobs_dir + "/" + id, 0700);
    if (auto lg = JobLog::open(m_runner.log_path(id)); lg.ok())
        (*lg)->event({{"type", "end"}, {"state", "cancelled"}, {"message", job.error}});
    notify(job);
    return ok_status();
}

void LocalJobService::worker_loop() {
    for (;;) {
        std::optional<JobInfo> next;
        {
            std::unique_lock lock(m_mutex);
            if (m_stopping) return;
            auto claimed = m_store->claim_next(now_unix_ms());
            if (!claimed.ok()) {
                log::error("ci: claiming a job failed", {{"error", claimed.error().to_string()}});
            } else if (*claimed) {
                next = std::move(**claimed);
                m_active[next->id] = std::make_shared<JobControl>();
            }
            if (!next) {
                m_wake.wait_for(lock, std::chrono::seconds(2));
                continue;
            }
        }
        run_one(std::move(*next));
    }
}

void LocalJobService::run_one(JobInfo job) {
    std::shared_ptr<JobControl> control;
    std::map<std::string, std::string> secrets;
    {
        std::lock_guard lock(m_mutex);
        control = m_active[job.id];
        if (auto it = m_secrets.find(job.id); it != m_secrets.end()) secrets = it->second;
    }
    notify(job);
    (void)make_dirs(m_config.runner.jobs_dir + "/" + job.id, 0700);
    auto log_file = JobLog::open(m_runner.log_path(job.id));
    RunOutcome out;
    if (!log_file.ok()) {
        out = RunOutcome{};
        out.error = "opening the job's log: " + log_file.error().message;
        out.retryable = true;
    } else {
        log::info("ci: job started", {{"job", job.id}, {"attempt", job.attempts}});
        if (!job.sha.empty() || resolve_sha(job, log_file->get(), out))
            out = m_runner.run(job, secrets, **log_file, *control, [&](const RunOutcome& o) {
            job.steps = o.steps;
            job.template_key = o.template_key;
            job.bake_hit = o.bake_hit;
            job.steps_ms = o.steps_ms;
            (void)m_store->update(job);
        });
    }
    bool stopping;
    {
        std::lock_guard lock(m_mutex);
        stopping = m_stopping;
        m_active.erase(job.id);
    }
    job.steps = out.steps;
    job.template_key = out.template_key;
    job.bake_hit = out.bake_hit;
    job.junit = out.junit;
    job.artifacts = out.artifacts;
    job.steps_ms = out.steps_ms;
    job.error = out.error;
    job.state = out.state;
    if (stopping && out.state == JobState::Cancelled && !control->timed_out) {
        job.state = JobState::Error;
        job.error = "kilnd was stopped while the job ran";
    }
    bool retry = job.state == JobState::Error && out.retryable && !stopping && job.attempts < m_config.max_attempts;
    if (retry) {
        job.state = JobState::Queued;  // the next free worker takes it again
        if (log_file.ok())
            (*log_file)->event({{"type", "retry"}, {"attempt", job.attempts}, {"message", out.error}});
        log::warn("ci: job attempt failed (infrastructure); retrying",
                  {{"job", job.id}, {"attempt", job.attempts}, {"error", out.error}});
    } else {
        job.finished_at_ms = now_unix_ms();
        if (log_file.ok())
            (*log_file)->event({{"type", "end"}, {"state", job_state_name(job.state)}, {"message", job.error},
                                {"junit", job.junit ? nlohmann::json{{"tests", job.junit->tests},
                                                                     {"failures", job.junit->failures},
                                                                     {"errors", job.junit->errors},
                                                                     {"skipped", job.junit->skipped}}
                                                    : nlohmann::json(nullptr)}});
        std::lock_guard lock(m_mutex);
        m_secrets.erase(job.id);
    }
    if (auto st = m_store->update(job); !st.ok())
        log::error("ci: recording a job failed", {{"job", job.id}, {"error", st.error().to_string()}});
    log::info("ci: job ended", {{"job", job.id}, {"state", job_state_name(job.state)}, {"attempt", job.attempts},
                                {"error", job.error.substr(0, 300)}});
    notify(job);
    if (retry) m_wake.notify_all();
}

bool LocalJobService::resolve_sha(JobInfo& job, JobLog* log, RunOutcome& out) {
    auto sha = m_git.resolve_ref(job.spec.repo, job.spec.ref);
    if (!sha.ok()) {
        out = RunOutcome{};
        out.state = JobState::Error;
        out.error = "resolving " + job.spec.ref + " in " + job.spec.repo + ": " + sha.error().message;
        return false;
    }
    job.sha = *sha;
    if (log) log->event({{"type", "resolved"}, {"ref", job.spec.ref}, {"sha", job.sha}});
    if (auto st = m_store->update(job); !st.ok())
        log::error("ci: recording a job failed", {{"job", job.id}, {"error", st.error().to_string()}});
    notify(job);
    return true;
}

void LocalJobService::watchdog_loop() {
    std::set<std::string> destroyed;  // sandboxes already removed (remove once, log once)
    std::unique_lock lock(m_mutex);
    while (!m_stopping || !m_active.empty()) {
        int64_t now = monotonic_ms();
        std::vector<std::pair<std::string, std::shared_ptr<JobControl>>> to_kill;
        for (auto& [id, c] : m_active) {
            int64_t d = c->deadline_ms.load();
            // A step's own timeout is set to end at the cap, and the agent enforces it; the VM is
            // destroyed a moment later only if that did not end the job (a stuck agent, a bake).
            if (!c->timed_out && d != 0 && now > d + kCapGraceMs) c->timed_out = true;
            if (c->stopped()) to_kill.emplace_back(id, c);
        }
        lock.unlock();
        for (auto& [id, c] : to_kill) {
            std::string sb = c->sandbox();
            // Removing the sandbox kills its QEMU; every agent call the worker waits on then fails.
            if (!sb.empty() && destroyed.insert(sb).second) {
                if (m_service.remove(m_config.runner.caller, sb).ok())
                    log::info("ci: job VM destroyed", {{"job", id}, {"sandbox", sb},
                                                      {"why", c->cancel ? "cancel" : "timeout"}});
            }
        }
        lock.lock();
        m_wake.wait_for(lock, std::chrono::milliseconds(100));
    }
}

}  // namespace kiln::ci
