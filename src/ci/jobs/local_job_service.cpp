// LocalJobService: queue, workers, watchdog and reconcile (see local_job_service.h).
#include "ci/jobs/local_job_service.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>

#include "base/clock.h"
#include "base/db.h"
#include "base/file_util.h"
#include "base/json_log.h"
#include "base/random.h"
#include "ci/jobs/job_log.h"
#include "ci/jobs/job_state.h"
#include "ci/jobs/pipeline_schedule.h"
#include "ci/jobs/pipeline_source.h"
#include "ci/jobs/startup_sweep.h"
#include "daemon/sandboxes/ids.h"

namespace kiln::ci {


constexpr int64_t kCapGraceMs = 1500;

namespace {
// The runner bakes for the host the service runs as (one host_name for leases and bakes).
RunnerConfig runner_on_host(RunnerConfig runner, const std::string& host) {
    runner.host = host;
    return runner;
}
}  // namespace

LocalJobService::LocalJobService(JobServiceConfig config, daemon::SandboxService& service, std::unique_ptr<JobStore> store)
    : m_config(std::move(config)),
      m_service(service),
      m_store(std::move(store)),
      m_git(m_config.git),
      m_runner(runner_on_host(m_config.runner, m_config.host), service, *m_store, m_git) {}

Result<std::unique_ptr<LocalJobService>> LocalJobService::create(JobServiceConfig config, daemon::SandboxService& service,
                                                                 std::unique_ptr<JobStore> store) {
    TRY(make_dirs(config.runner.jobs_dir, 0700));
    return std::unique_ptr<LocalJobService>(new LocalJobService(std::move(config), service, std::move(store)));
}

LocalJobService::~LocalJobService() { stop(); }

Status LocalJobService::start() {
    // Nothing runs yet: whatever an attempt was writing when kilnd stopped is a leftover.
    sweep_interrupted_work(m_config.runner.jobs_dir, m_config.git.dir);
    // Only this host's jobs: another host's running jobs are alive (or theirs to re-queue by lease).
    report_interrupted(TRY(m_store->recover_interrupted(now_unix_ms(), m_config.max_restarts, m_config.host)));
    // Bakes from before hosts are the first host's to start (see claim_unowned_bakes).
    if (auto claimed = m_store->claim_unowned_bakes(m_config.host); !claimed.ok())
        return claimed.error();
    else if (*claimed > 0)
        log::info("ci: bakes from before hosts are this host's", {{"bakes", *claimed}, {"host", m_config.host}});
    m_runner.collect_bakes();
    // A kilnd that stopped between a job's end and its pipeline's move on left it behind.
    auto pipelines = m_store->unfinished_pipelines();
    if (!pipelines.ok()) return pipelines.error();
    for (const auto& id : *pipelines) advance(id);
    if (!m_config.listen_url.empty())
        m_listener = TRY(PgListener::start(m_config.listen_url, kQueueChannel, [this] { m_wake.notify_all(); }));
    std::lock_guard lock(m_mutex);
    int n = std::max(1, m_config.workers);
    for (int i = 0; i < n; ++i) m_threads.emplace_back([this] { worker_loop(); });
    m_threads.emplace_back([this] { watchdog_loop(); });
    m_threads.emplace_back([this] { retention_loop(); });
    m_threads.emplace_back([this] { lease_loop(); });
    log::info("ci: job workers started", {{"workers", n}, {"host", m_config.host}, {"lease_renew_ms", m_config.lease_renew_ms},
                                         {"lease_timeout_ms", m_config.lease_timeout_ms}});
    return ok_status();
}

void LocalJobService::report_interrupted(const std::vector<InterruptedJob>& jobs) {
    for (const auto& [job, attempt, requeued, lost_host] : jobs) {
        // The log goes on, appended: the interrupted attempt's lines stay (what it printed is
        // worth reading), and this line separates them from the next attempt's, which begins
        // with its own "attempt" event.
        (void)make_dirs(m_config.runner.jobs_dir + "/" + job.id, 0700);
        auto log_file = JobLog::open(m_runner.log_path(job.id));
        if (!lost_host.empty()) {
            // Another host's job: the line goes to this host's copy of its log; the attempt that
            // runs next says the same in its "attempt" event (attempt_reason), wherever it runs.
            log::warn(requeued ? "ci: a lost host's job queued again" : "ci: a lost host's job recorded as error",
                      {{"job", job.id}, {"lost_host", lost_host}, {"interrupted_attempt", attempt}, {"attempt", job.attempt}});
            if (log_file.ok()) {
                (*log_file)->event({{"type", "interrupted"}, {"attempt", attempt}, {"requeued", requeued}, {"host", lost_host},
                                    {"message", requeued ? job.attempt_reason : job.error}});
                if (!requeued) (*log_file)->event({{"type", "end"}, {"state", "error"}, {"message", job.error}});
            }
        } else if (requeued) {
            log::warn("ci: job was running when kilnd stopped; queued again",
                      {{"job", job.id}, {"interrupted_attempt", attempt}, {"restarts", job.restarts}});
            if (log_file.ok())
                (*log_file)->event({{"type", "interrupted"}, {"attempt", attempt}, {"requeued", true},
                                    {"message", "attempt " + std::to_string(attempt) +
                                                    " was interrupted by a kilnd restart; the job runs again"}});
        } else {
            log::warn("ci: job was running when kilnd stopped, again; recorded as error",
                      {{"job", job.id}, {"interrupted_attempt", attempt}, {"restarts", job.restarts}});
            if (log_file.ok()) {
                (*log_file)->event({{"type", "interrupted"}, {"attempt", attempt}, {"requeued", false},
                                    {"message", "attempt " + std::to_string(attempt) + " was interrupted by a kilnd restart"}});
                (*log_file)->event({{"type", "end"}, {"state", "error"}, {"message", job.error}});
            }
        }
        notify(job);
    }
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
    m_listener.reset();  // its callback wakes this service's workers: gone before the service
}

void LocalJobService::on_state_change(std::function<void(const JobInfo&)> listener) {
    std::lock_guard lock(m_mutex);
    m_listeners.push_back(std::move(listener));
}

namespace {
// Calls each listener with `value`, on a copy of the list taken under `mutex`: a listener may
// take time (a status post queues) and must not hold the queue's lock.
template <class T>
void call_listeners(std::mutex& mutex, const std::vector<std::function<void(const T&)>>& listeners, const T& value) {
    std::vector<std::function<void(const T&)>> copy;
    {
        std::lock_guard lock(mutex);
        copy = listeners;
    }
    for (auto& l : copy) l(value);
}
}  // namespace

void LocalJobService::notify(const JobInfo& job) { call_listeners(m_mutex, m_listeners, job); }

Result<JobInfo> LocalJobService::submit(const JobSpec& spec) {
    // A job fetches, tars and checks out its code, and may bake: refused now rather than failed
    // half way on a full disk.
    if (m_config.disk) TRY(m_config.disk->check("queue a CI job"));
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
    // The pipeline and its first job: the worker that claims the job reads .kiln.yml and plans
    // the pipeline's other jobs (plan_pipeline_of).
    PipelineInfo pipeline;
    pipeline.id = "pipeline-" + TRY(random_hex(6));
    pipeline.spec = job.spec;
    pipeline.sha = job.sha;
    pipeline.created_at_ms = job.created_at_ms;
    job.pipeline_id = pipeline.id;
    {
        std::lock_guard lock(m_mutex);
        if (m_stopping) return make_error(ErrorCode::Unavailable, "kilnd is shutting down");
        if (!spec.secrets.empty()) m_secrets[pipeline.id] = spec.secrets;
    }
    auto stored = m_store->insert_pipeline(pipeline, job);
    if (!stored.ok() || stored->id != job.id) {
        std::lock_guard lock(m_mutex);
        m_secrets.erase(pipeline.id);
    }
    if (!stored.ok()) return store_error(stored.error());
    if (stored->id != job.id) {
        // The same submit_key was submitted before (on this host or another): that job stands.
        log::info("ci: submit repeated; the first pipeline stands",
                  {{"job", stored->id}, {"pipeline", stored->pipeline_id}, {"submit_key", spec.submit_key.substr(0, 100)}});
        return std::move(*stored);
    }
    log::info("ci: pipeline queued", {{"pipeline", pipeline.id}, {"job", job.id}, {"repo", job.spec.repo}, {"sha", job.sha},
                                      {"source", job.spec.source}, {"trusted", job.spec.trusted}});
    notify(job);
    pipeline.jobs = {job};
    notify_pipeline(pipeline);
    m_wake.notify_all();
    return job;
}

Result<PipelineInfo> LocalJobService::get_pipeline(const std::string& id) {
    auto p = m_store->get_pipeline(id);
    if (!p.ok()) return store_error(p.error());
    if (!*p) return make_error(ErrorCode::NotFound, "no pipeline '" + id.substr(0, 80) + "'");
    return std::move(**p);
}

Result<std::vector<PipelineInfo>> LocalJobService::list_pipelines(int limit, int64_t owner_token_id) {
    auto l = m_store->list_pipelines(std::clamp(limit, 1, 1000), owner_token_id);
    if (!l.ok()) return store_error(l.error());
    return std::move(*l);
}

Result<std::vector<BakeInfo>> LocalJobService::list_bakes(int limit) {
    auto l = m_store->list_bakes(std::clamp(limit, 1, 1000));
    if (!l.ok()) return store_error(l.error());
    return std::move(*l);
}

Result<std::vector<JobInfo>> LocalJobService::list_page(const ListPage& page) {
    auto l = m_store->list_page(page);
    if (!l.ok()) return store_error(l.error());
    return std::move(*l);
}

Result<std::vector<PipelineInfo>> LocalJobService::list_pipelines_page(const ListPage& page) {
    auto l = m_store->list_pipelines_page(page);
    if (!l.ok()) return store_error(l.error());
    return std::move(*l);
}

void LocalJobService::on_pipeline_change(std::function<void(const PipelineInfo&)> listener) {
    std::lock_guard lock(m_mutex);
    m_pipeline_listeners.push_back(std::move(listener));
}

void LocalJobService::notify_pipeline(const PipelineInfo& pipeline) {
    call_listeners(m_mutex, m_pipeline_listeners, pipeline);
}

void LocalJobService::log_end(const JobInfo& job) {
    (void)make_dirs(m_config.runner.jobs_dir + "/" + job.id, 0700);
    if (auto lg = JobLog::open(m_runner.log_path(job.id)); lg.ok())
        (*lg)->event({{"type", "end"}, {"state", job_state_name(job.state)}, {"message", job.error}});
}

Status LocalJobService::cancel_pipeline(const std::string& id) {
    PipelineChange applied;
    std::optional<PipelineInfo> p;
    {
        std::lock_guard lock(m_mutex);
        // In the store, under the pipeline's lock: a job queued is cancelled unless a host claimed
        // it meanwhile; a running one, here or on another host, is asked to stop (its lease).
        auto got = m_store->change_pipeline(id, [](PipelineInfo& pipeline) {
            PipelineChange change;
            if (is_final(pipeline.state)) return change;  // ended: nothing to do
            pipeline.cancel_requested = true;
            change.pipeline_changed = true;
            const int64_t now = now_unix_ms();
            for (size_t i = 0; i < pipeline.jobs.size(); ++i) {
                JobInfo& j = pipeline.jobs[i];
                if (j.state == JobState::Queued || j.state == JobState::Waiting) {
                    j.state = JobState::Cancelled;
                    j.error = "cancelled with its pipeline before it started";
                    j.finished_at_ms = now;
                    change.changed_jobs.push_back(i);
                } else if (j.state == JobState::Running) {
                    change.cancel_running.push_back(i);
                }
            }
            return change;
        }, &applied);
        if (!got.ok()) return store_error(got.error());
        if (!*got) return make_error(ErrorCode::NotFound, "no pipeline '" + id.substr(0, 80) + "'");
        p = std::move(*got);
        // This host's own running jobs stop now, not at the next renewal.
        for (size_t i : applied.cancel_running)
            if (auto it = m_active.find(p->jobs[i].id); it != m_active.end()) it->second->cancel = true;
    }
    if (!applied.pipeline_changed) return ok_status();
    log::info("ci: pipeline cancelled", {{"pipeline", id}, {"jobs_not_started", applied.changed_jobs.size()},
                                         {"jobs_asked_to_stop", applied.cancel_running.size()}});
    for (size_t i : applied.changed_jobs) {
        log_end(p->jobs[i]);
        notify(p->jobs[i]);
    }
    advance(id);  // ends it now if no job of it was running
    m_wake.notify_all();
    return ok_status();
}

bool LocalJobService::wait_for_store(const Error& error) {
    if (error.code != ErrorCode::StoreUnavailable) return false;
    std::unique_lock lock(m_mutex);
    if (m_stopping) return false;
    m_wake.wait_for(lock, std::chrono::seconds(1));
    return !m_stopping;
}

void LocalJobService::advance(const std::string& pipeline_id) {
    for (;;) {
        auto st = advance_once(pipeline_id);
        if (st.ok() || !wait_for_store(st.error())) return;
    }
}

Status LocalJobService::advance_once(const std::string& pipeline_id) {
    PipelineChange applied;
    // In the store, under the pipeline's lock: two hosts that end jobs of one pipeline at once
    // move it on one after the other, the second from what the first wrote.
    auto got = m_store->change_pipeline(pipeline_id, [](PipelineInfo& pipeline) {
        PipelineAdvance moved = advance_pipeline(pipeline, now_unix_ms());
        PipelineChange change;
        change.changed_jobs = std::move(moved.changed_jobs);
        change.pipeline_changed = moved.pipeline_changed;
        return change;
    }, &applied);
    if (!got.ok() || !*got) {
        log::error("ci: moving a pipeline on failed",
                   {{"pipeline", pipeline_id}, {"error", got.ok() ? "not found" : got.error().to_string()}});
        return got.ok() ? ok_status() : Status(got.error());
    }
    const PipelineInfo& p = **got;
    if (applied.changed_jobs.empty() && !applied.pipeline_changed) return ok_status();
    if (applied.pipeline_changed) {
        std::lock_guard lock(m_mutex);
        m_secrets.erase(pipeline_id);
    }
    for (size_t i : applied.changed_jobs) {
        const JobInfo& j = p.jobs[i];
        if (j.state == JobState::Skipped) {
            log_end(j);
            log::info("ci: job skipped", {{"job", j.id}, {"name", j.name}, {"why", j.error.substr(0, 300)}});
        }
        notify(j);
    }
    if (applied.pipeline_changed) {
        log::info("ci: pipeline ended", {{"pipeline", p.id}, {"state", pipeline_state_name(p.state)},
                                         {"jobs", p.jobs.size()}, {"error", p.error.substr(0, 300)}});
        notify_pipeline(p);
    }
    m_wake.notify_all();
    return ok_status();
}

bool LocalJobService::plan_pipeline_of(JobInfo& job, JobLog* log, RunOutcome& out, std::optional<LoadedPipeline>& source,
                                       JobControl& control) {
    auto loaded = load_pipeline(m_git, job.spec, job.sha);
    if (auto* problem = std::get_if<PipelineLoadError>(&loaded)) {
        out = RunOutcome{};
        out.state = JobState::Error;
        out.error = problem->message;
        out.retryable = problem->retryable;
        return false;
    }
    const std::vector<PlannedJob> plan = plan_pipeline(std::get<LoadedPipeline>(loaded).pipeline);
    bool ids_ok = true;
    std::vector<JobInfo> rows = plan_rows(job, plan, [&ids_ok] {
        auto hex = random_hex(6);
        ids_ok = ids_ok && hex.ok();
        return hex.ok() ? "job-" + *hex : std::string();
    });
    PipelineInfo p;
    Result<bool> saved = ids_ok ? m_store->save_plan(job.pipeline_id, job.sha, rows, job.id, now_unix_ms(), &p)
                                : Result<bool>(make_error(ErrorCode::Internal, "no random ids"));
    if (!saved.ok()) {
        out = RunOutcome{};
        out.state = JobState::Error;
        out.error = "recording the pipeline's jobs: " + saved.error().message;
        out.retryable = true;
        return false;
    }
    if (!*saved) {
        // Another host re-queued the job (this one was taken for lost): its plan is not ours to write.
        control.lease_lost = true;
        out = RunOutcome{};
        out.state = JobState::Error;
        out.error = "this host lost the job's lease";
        return false;
    }
    nlohmann::json names = nlohmann::json::array();
    for (auto& row : rows) {
        names.push_back(row.name);
        if (row.id == job.id) job = row;
    }
    if (log) log->event({{"type", "pipeline"}, {"pipeline", job.pipeline_id}, {"job", job.name}, {"jobs", names}});
    log::info("ci: pipeline planned", {{"pipeline", job.pipeline_id}, {"jobs", rows.size()}});
    for (const auto& row : rows) notify(row);
    p.jobs = rows;
    notify_pipeline(p);
    m_wake.notify_all();
    source = std::move(std::get<LoadedPipeline>(loaded));
    return true;
}

Result<JobInfo> LocalJobService::get(const std::string& id) {
    auto j = m_store->get(id);
    if (!j.ok()) return store_error(j.error());
    if (!*j) return make_error(ErrorCode::NotFound, "no job '" + id.substr(0, 80) + "'");
    return std::move(**j);
}

Result<std::vector<JobInfo>> LocalJobService::list(int limit, int64_t owner_token_id) {
    auto l = m_store->list(std::clamp(limit, 1, 1000), owner_token_id);
    if (!l.ok()) return store_error(l.error());
    return std::move(*l);
}

Result<int64_t> LocalJobService::unfinished_jobs(int64_t owner_token_id) {
    auto n = m_store->count_unfinished(owner_token_id);
    if (!n.ok()) return store_error(n.error());
    return *n;
}

Status LocalJobService::cancel(const std::string& id) {
    {
        std::lock_guard lock(m_mutex);
        if (auto it = m_active.find(id); it != m_active.end()) {
            it->second->cancel = true;  // the watchdog destroys the VM; the worker records the state
            m_wake.notify_all();
            return ok_status();
        }
    }
    // Queued or waiting: ended in the store unless a host claimed it meanwhile; running on another
    // host: that host is asked to (it sees the request when it renews the lease).
    auto ended = m_store->cancel_job(id, "cancelled before it started", now_unix_ms());
    if (!ended.ok()) return store_error(ended.error());
    if (!*ended) {
        auto j = m_store->get(id);
        if (!j.ok()) return store_error(j.error());
        if (!*j) return make_error(ErrorCode::NotFound, "no job '" + id.substr(0, 80) + "'");
        return ok_status();  // running elsewhere (asked to stop) or finished: nothing more here
    }
    log_end(**ended);
    notify(**ended);
    advance((*ended)->pipeline_id);  // its dependents are skipped; the pipeline may end
    return ok_status();
}

void LocalJobService::worker_loop() {
    for (;;) {
        std::optional<JobInfo> next;
        {
            std::unique_lock lock(m_mutex);
            if (m_stopping) return;
            if (disk_too_full()) {
                // Queued jobs (a webhook's, say) wait for room rather than fail half way; the
                // pruner or the operator frees it.
                m_wake.wait_for(lock, std::chrono::seconds(5));
                continue;
            }
            auto claimed = m_store->claim_next(now_unix_ms(), m_config.host, m_config.lease_timeout_ms);
            if (!claimed.ok()) {
                log::error("ci: claiming a job failed", {{"error", claimed.error().to_string()}});
            } else if (*claimed) {
                next = std::move(**claimed);
                m_active[next->id] = std::make_shared<JobControl>();
                m_leases[next->id] = *next;
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
        if (auto it = m_secrets.find(job.pipeline_id); it != m_secrets.end()) secrets = it->second;
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
        bool ready = job.sha.empty() ? resolve_sha(job, log_file->get(), out, *control) : true;
        // The pipeline's first job plans it: reads .kiln.yml and records every job; its attempt
        // then runs from that same load.
        std::optional<LoadedPipeline> source;
        if (ready && job.name.empty()) ready = plan_pipeline_of(job, log_file->get(), out, source, *control);
        if (ready)
            out = m_runner.run(job, secrets, **log_file, *control, [&](const RunOutcome& o) {
            job.steps = o.steps;
            job.template_key = o.template_key;
            job.bake_hit = o.bake_hit;
            job.steps_ms = o.steps_ms;
            record_running(job, control.get());
        }, source ? &*source : nullptr);
    }
    bool stopping;
    {
        std::lock_guard lock(m_mutex);
        stopping = m_stopping;
        m_active.erase(job.id);
        m_leases.erase(job.id);
    }
    if (control->lease_lost) {
        // Another host re-queued the job while this one was taken for lost: the job's record is
        // the new attempt's. Nothing of this one is written (the store would refuse it too).
        log::warn("ci: job's lease lost; its attempt here was stopped and not recorded",
                  {{"job", job.id}, {"attempt", job.attempts}, {"host", m_config.host}});
        if (log_file.ok())
            (*log_file)->event({{"type", "lease_lost"}, {"attempt", job.attempts}, {"host", m_config.host},
                                {"message", "host " + m_config.host + " lost the job's lease: this attempt was stopped"}});
        return;
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
    }
    Result<bool> recorded = false;
    for (bool logged = false;;) {
        recorded = m_store->update_leased(job);
        if (recorded.ok()) break;
        if (!logged) log::error("ci: recording a job failed", {{"job", job.id}, {"error", recorded.error().to_string()},
                                                              {"waiting_for_the_store", recorded.error().code == ErrorCode::StoreUnavailable}});
        logged = true;
        if (!wait_for_store(recorded.error())) break;
    }
    if (recorded.ok() && !*recorded) {
        // Its lease expired before the end was written (this host was cut off from the store for
        // longer than the lease): another host has re-queued it; its outcome here is not the job's.
        log::warn("ci: job's lease lost before its end was recorded; not recorded",
                  {{"job", job.id}, {"attempt", job.attempts}, {"state", job_state_name(job.state)}});
        return;
    }
    log::info("ci: job ended", {{"job", job.id}, {"state", job_state_name(job.state)}, {"attempt", job.attempts},
                                {"error", job.error.substr(0, 300)}});
    notify(job);
    if (retry) m_wake.notify_all();
    else advance(job.pipeline_id);  // the jobs that need it, and the pipeline's end
}

bool LocalJobService::resolve_sha(JobInfo& job, JobLog* log, RunOutcome& out, JobControl& control) {
    auto sha = m_git.resolve_ref(job.spec.repo, job.spec.ref);
    if (!sha.ok()) {
        out = RunOutcome{};
        out.state = JobState::Error;
        out.error = "resolving " + job.spec.ref + " in " + job.spec.repo + ": " + sha.error().message;
        return false;
    }
    job.sha = *sha;
    if (log) log->event({{"type", "resolved"}, {"ref", job.spec.ref}, {"sha", job.sha}});
    if (!record_running(job, &control)) {
        out = RunOutcome{};
        out.state = JobState::Error;
        out.error = "recording the resolved commit failed";
        out.retryable = true;
        return false;
    }
    notify(job);
    return true;
}

bool LocalJobService::record_running(const JobInfo& job, JobControl* control) {
    auto written = m_store->update_leased(job);
    if (!written.ok()) {
        log::error("ci: recording a job failed", {{"job", job.id}, {"error", written.error().to_string()}});
        return false;
    }
    if (!*written && control && !control->lease_lost.exchange(true))
        log::warn("ci: job's lease lost: stopping it here", {{"job", job.id}, {"attempt", job.attempts}});
    return *written;
}

void LocalJobService::lease_loop() {
    std::unique_lock lock(m_mutex);
    int64_t next_sweep = 0;
    // Since when the store has answered this host without a break (-1: it did not, last time).
    // Other hosts' jobs are taken for lost only after a whole lease timeout of answers: when the
    // store itself was down, every host's renewals failed alike, and the hosts that are alive get
    // that long to renew before any of them is taken for lost. (At start, too: a host that has
    // just started knows nothing of the others' renewals.)
    int64_t store_ok_since = monotonic_ms();
    while (!m_stopping) {
        lock.unlock();
        const bool renewed = renew_leases();
        const int64_t now = monotonic_ms();
        if (!renewed) store_ok_since = -1;
        if (now >= next_sweep) {
            next_sweep = now + m_config.lease_renew_ms;
            if (store_ok_since < 0 || now - store_ok_since < m_config.lease_timeout_ms) {
                if (m_store->ping().ok()) {
                    if (store_ok_since < 0) store_ok_since = now;
                } else {
                    store_ok_since = -1;
                }
            } else {
                // Jobs of lost hosts; every host looks, one takes each (the store's conditions decide).
                auto requeued = m_store->requeue_expired(now_unix_ms(), m_config.max_restarts);
                if (!requeued.ok()) {
                    store_ok_since = -1;
                    log::warn("ci: re-queuing the jobs of lost hosts failed", {{"error", requeued.error().to_string()}});
                } else if (!requeued->empty()) {
                    report_interrupted(*requeued);
                    for (const auto& r : *requeued)
                        if (!r.requeued) advance(r.job.pipeline_id);
                    m_wake.notify_all();
                }
            }
        }
        lock.lock();
        m_wake.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(100, m_config.lease_renew_ms)),
                        [this] { return m_stopping; });
    }
}

bool LocalJobService::renew_leases() {
    std::vector<std::pair<JobInfo, std::shared_ptr<JobControl>>> held;
    {
        std::lock_guard lock(m_mutex);
        for (const auto& [id, claim] : m_leases)
            if (auto it = m_active.find(id); it != m_active.end()) held.emplace_back(claim, it->second);
    }
    bool answered = true;
    for (auto& [claim, control] : held) {
        auto renewed = m_store->renew_lease(claim, now_unix_ms(), m_config.lease_timeout_ms);
        if (!renewed.ok()) {
            // The store is unreachable: the lease runs on; if it expires first, another host
            // re-queues the job and this attempt's writes are refused.
            log::warn("ci: renewing a job's lease failed", {{"job", claim.id}, {"error", renewed.error().to_string()}});
            answered = false;
            continue;
        }
        if (!renewed->held) {
            if (!control->lease_lost.exchange(true))
                log::warn("ci: job's lease lost (another host re-queued it): stopping it here",
                          {{"job", claim.id}, {"attempt", claim.attempts}});
            m_wake.notify_all();
        } else if (renewed->cancel_requested && !control->cancel.exchange(true)) {
            log::info("ci: job cancelled from another host", {{"job", claim.id}});
            m_wake.notify_all();
        }
    }
    return answered;
}

bool LocalJobService::disk_too_full() {
    if (!m_config.disk) return false;
    auto reading = m_config.disk->read();
    bool short_now = reading.ok() && !reading->ok;
    if (short_now != m_disk_short) {  // said once per change, not on every poll
        if (short_now)
            log::warn("ci: queued jobs wait: the disk is nearly full",
                      {{"free_bytes", reading->space.free_bytes}, {"required_free_bytes", reading->required_free_bytes}});
        else
            log::info("ci: disk space is back; queued jobs start again", {});
        m_disk_short = short_now;
    }
    return short_now;
}

void LocalJobService::retention_loop() {
    std::unique_lock lock(m_mutex);
    while (!m_stopping) {
        lock.unlock();
        prune_once();
        lock.lock();
        m_wake.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(1000, m_config.retention.interval_ms)),
                        [this] { return m_stopping; });
    }
}

void LocalJobService::prune_once() {
    const int64_t now = now_unix_ms();
    prune_jobs(now);
    prune_mirrors(now);
}

void LocalJobService::prune_jobs(int64_t now) {
    const RetentionConfig& r = m_config.retention;
    const std::string& jobs_dir = m_config.runner.jobs_dir;
    auto remove_dir = [&](const std::string& id) {
        if (auto st = remove_tree(jobs_dir + "/" + id); !st.ok())
            log::warn("ci: retention could not remove a job's files", {{"job", id}, {"error", st.error().message}});
    };
    int rows = 0;
    if (r.job_max_age_ms > 0) {
        // Rows first: a job whose row is gone is no longer shown, so its files may go.
        auto deleted = m_store->delete_finished_before(now - r.job_max_age_ms);
        if (!deleted.ok()) log::warn("ci: retention could not delete old jobs", {{"error", deleted.error().to_string()}});
        else for (const auto& id : *deleted) remove_dir(id);
        rows = deleted.ok() ? int(deleted->size()) : 0;
    }
    auto ages = m_store->job_ages();
    if (!ages.ok()) {
        log::warn("ci: retention could not list jobs", {{"error", ages.error().to_string()}});
        return;
    }
    std::map<std::string, const JobAge*> by_id;
    for (const auto& a : *ages) by_id[a.id] = &a;
    // Every job dir: a job's own, or one whose row is gone (the files of a deleted row that a
    // crash left), which ages from its mtime.
    std::vector<PruneCandidate> candidates;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(jobs_dir, ec)) {
        if (!e.is_directory(ec) || e.is_symlink(ec)) continue;
        PruneCandidate c;
        c.name = e.path().filename().string();
        if (auto it = by_id.find(c.name); it != by_id.end()) {
            c.in_use = !it->second->finished;
            c.last_used_ms = it->second->finished_at_ms;
        } else {
            struct stat st {};
            if (::stat(e.path().c_str(), &st) != 0) continue;
            c.last_used_ms = int64_t(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
        }
        c.bytes = allocated_bytes(e.path().string());
        candidates.push_back(std::move(c));
    }
    PruneChoice choice = choose_prunable(std::move(candidates), now, r.job_max_age_ms, r.jobs_max_bytes);
    for (const auto& id : choice.expired) remove_dir(id);  // rows gone already (or never there)
    for (const auto& id : choice.over_cap) remove_dir(id);  // the row stays until its age: its record is small
    if (rows + choice.expired.size() + choice.over_cap.size() > 0)
        log::info("ci: retention pruned jobs", {{"rows", rows}, {"dirs_expired", choice.expired.size()},
                                                {"dirs_over_cap", choice.over_cap.size()}});
}

void LocalJobService::prune_mirrors(int64_t now) {
    const RetentionConfig& r = m_config.retention;
    const std::string& git_dir = m_config.git.dir;
    if (r.git_max_age_ms <= 0 && r.git_max_bytes == 0) return;
    // The mirrors and their sizes, read without the lock (a walk of each). A candidate's name is
    // its path relative to ci/git (area/<hash>.git).
    std::vector<PruneCandidate> candidates;
    for (const auto& folder : mirror_folders(git_dir)) {
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(folder, ec)) {
            const std::string path = e.path().string();
            if (!path.ends_with(".git") || !e.is_directory(ec) || e.is_symlink(ec)) continue;
            struct stat st {};
            if (::stat(path.c_str(), &st) != 0) continue;
            candidates.push_back(PruneCandidate{path.substr(git_dir.size() + 1), false,
                                                int64_t(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000,
                                                allocated_bytes(path)});
        }
    }
    std::vector<std::string> doomed;
    {
        // Under the lock no worker claims a job: every job that may touch a mirror from now on
        // is queued or running in the store, and its mirror is left alone. The chosen mirrors are
        // renamed before the lock is released; a later job fetches its repository anew.
        std::lock_guard lock(m_mutex);
        auto ages = m_store->job_ages();
        if (!ages.ok()) {
            log::warn("ci: retention could not list jobs", {{"error", ages.error().to_string()}});
            return;
        }
        std::set<std::string> needed;
        for (const auto& a : *ages)
            if (!a.finished) needed.insert(m_git.mirror_path(a.repo));
        for (auto& c : candidates) c.in_use = needed.count(git_dir + "/" + c.name) > 0;
        PruneChoice choice = choose_prunable(std::move(candidates), now, r.git_max_age_ms, r.git_max_bytes);
        for (auto* list : {&choice.expired, &choice.over_cap})
            for (const auto& name : *list) {
                std::string from = git_dir + "/" + name, to = from + kPruningSuffix;
                if (::rename(from.c_str(), to.c_str()) == 0) doomed.push_back(to);
            }
    }
    for (const auto& path : doomed)
        if (auto st = remove_tree(path); !st.ok())
            log::warn("ci: retention could not remove a git mirror", {{"error", st.error().message}});
    if (!doomed.empty()) log::info("ci: retention pruned git mirrors", {{"mirrors", doomed.size()}});
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
            // Every VM of the job (a sharded job has several; one forked or created after this
            // pass is found by the next). Removing a sandbox kills its QEMU; every agent call the
            // worker and its shard threads wait on then fails.
            for (const std::string& sb : c->sandboxes()) {
                if (!destroyed.insert(sb).second) continue;
                if (m_service.remove(m_config.runner.caller, sb).ok())
                    log::info("ci: job VM destroyed", {{"job", id}, {"sandbox", sb},
                                                      {"why", c->lease_lost ? "lease lost" : c->cancel ? "cancel" : "timeout"}});
            }
        }
        lock.lock();
        m_wake.wait_for(lock, std::chrono::milliseconds(100));
    }
}

}  // namespace kiln::ci
