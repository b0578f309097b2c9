// LocalJobService: the JobService of one kilnd: jobs queued in SQLite (JobStore), N worker
// threads each running one job at a time (JobRunner), a watchdog that enforces cancel and each
// job's hard cap by destroying its VM, the start-up reconcile of jobs a crash interrupted, and
// the retention pruner (job_retention.h).
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/pg_listener.h"
#include "ci/jobs/git_source.h"
#include "ci/jobs/job_retention.h"
#include "ci/jobs/job_runner.h"
#include "ci/jobs/job_service.h"
#include "ci/jobs/job_store.h"
#include "ci/jobs/repo_url.h"
#include "daemon/disk_guard.h"

namespace kiln::ci {

struct JobServiceConfig {
    RunnerConfig runner;
    int workers = 2;           // KILN_CI_WORKERS
    int max_attempts = 3;      // an infrastructure error is retried at most twice
    GitCacheConfig git;        // $DATA/ci/git, the git user, the size cap
    // ci_repos: where jobs of non-admin callers and webhooks may come from; empty: only admin
    // callers may queue jobs (docs/ci.md "Where code may come from").
    RepoAllowlist repos;
    // A job interrupted by a kilnd restart runs again this many times; the next restart that
    // interrupts it ends it as error.
    int max_restarts = 1;
    // This kilnd's name in the fleet (host_name): the lease holder of the jobs it runs.
    std::string host;
    // A running job's lease is renewed every lease_renew_ms and lasts lease_timeout_ms; a job
    // whose lease expired is re-queued by any host (ci_lease_renew_seconds, ci_lease_timeout_seconds).
    int64_t lease_renew_ms = 3000;
    int64_t lease_timeout_ms = 15000;
    // The store's postgresql:// URL: the workers LISTEN on kQueueChannel over a connection of
    // their own and wake on any host's NOTIFY (their 2 s poll stays, the fallback). "" (SQLite):
    // woken in process only.
    std::string listen_url;
    RetentionConfig retention;
    // Submits are refused (503) and queued jobs wait while the disk is nearly full; null: no
    // floor. Outlives the service.
    const daemon::DiskGuard* disk = nullptr;
};

class LocalJobService final : public JobService {
public:
    // Keeps its jobs and bakes in `store` (kilnd.db's CI tables).
    static Result<std::unique_ptr<LocalJobService>> create(JobServiceConfig config, daemon::SandboxService& service,
                                                           std::unique_ptr<JobStore> store);
    ~LocalJobService() override;  // stop()

    // Sweeps what interrupted attempts left on disk (startup_sweep.h); queues again the jobs a
    // previous kilnd left running (their VMs were killed by the sandbox reconcile) that no restart
    // interrupted before, and ends as error those one did (JobStore::recover_interrupted); then
    // starts the workers, the watchdog and the pruner. Queued jobs are picked up.
    Status start();
    // Stops taking jobs; jobs running now are ended (recorded error) and their VMs destroyed.
    void stop();

    Result<JobInfo> submit(const JobSpec& spec) override;
    Result<JobInfo> get(const std::string& id) override;
    Result<std::vector<JobInfo>> list(int limit, int64_t owner_token_id = 0) override;
    Result<int64_t> unfinished_jobs(int64_t owner_token_id) override;
    Status cancel(const std::string& id) override;
    void on_state_change(std::function<void(const JobInfo&)> listener) override;
    Result<PipelineInfo> get_pipeline(const std::string& id) override;
    Result<std::vector<PipelineInfo>> list_pipelines(int limit, int64_t owner_token_id = 0) override;
    Result<std::vector<JobInfo>> list_page(const ListPage& page) override;
    Result<std::vector<PipelineInfo>> list_pipelines_page(const ListPage& page) override;
    Status cancel_pipeline(const std::string& id) override;
    void on_pipeline_change(std::function<void(const PipelineInfo&)> listener) override;
    Result<std::vector<BakeInfo>> list_bakes(int limit) override;

    // For the log route: the job's log file (it may not exist yet while queued).
    std::string log_path(const std::string& id) const override { return m_runner.log_path(id); }
    std::string artifact_path(const std::string& id, size_t index) const override {
        return m_runner.artifact_path(id, index);
    }

    // One pass of the retention pruner (it runs every RetentionConfig::interval_ms; public for tests).
    void prune_once();

private:
    LocalJobService(JobServiceConfig config, daemon::SandboxService& service, std::unique_ptr<JobStore> store);
    void worker_loop();
    void watchdog_loop();
    // Renews the leases of the jobs this host runs (a lost one stops its job; a cancel asked on
    // another host reaches it here) and re-queues the jobs of lost hosts (requeue_expired).
    void lease_loop();
    // False when the store did not answer one of the renewals.
    bool renew_leases();
    // A write of a running job's row under its lease (JobStore::update_leased); a lost lease
    // stops the job (JobControl::lease_lost). False: not written.
    bool record_running(const JobInfo& job, JobControl* control);
    void retention_loop();
    // True while the disk guard says the disk is nearly full (logged when that changes).
    bool disk_too_full();
    void prune_jobs(int64_t now_ms);
    void prune_mirrors(int64_t now_ms);
    // Writes the end (or requeue) of the jobs a restart (or a lost host) interrupted to their logs.
    void report_interrupted(const std::vector<InterruptedJob>& jobs);
    void run_one(JobInfo job);
    // A job queued with a ref: its commit, found now on the worker (never on an HTTP thread).
    // An error ends the job (recorded in `out`); not retried, as it is the repository's.
    bool resolve_sha(JobInfo& job, JobLog* log, RunOutcome& out, JobControl& control);
    void notify(const JobInfo& job);
    void notify_pipeline(const PipelineInfo& pipeline);
    // A pipeline's first job, claimed: its .kiln.yml read (kept in `source` for the job's
    // attempt), every job of it recorded (this one named, the others queued or waiting). An error
    // ends the job (recorded in `out`).
    bool plan_pipeline_of(JobInfo& job, JobLog* log, RunOutcome& out, std::optional<LoadedPipeline>& source,
                          JobControl& control);
    // After jobs of the pipeline ended: its waiting jobs queued or skipped, its own end
    // (advance_pipeline), recorded and told to the listeners.
    void advance(const std::string& pipeline_id);
    Status advance_once(const std::string& pipeline_id);  // a store failure is logged and returned
    // After a store call failed: true when it failed because the store is down (PostgreSQL
    // restarting) and kilnd is not stopping, having waited a second to try again. What a worker
    // writes at a job's end must reach the store: a job recorded as running would be run again
    // by the next start's recovery.
    bool wait_for_store(const Error& error);
    // The "end" line of a job that ended without running (cancelled, skipped).
    void log_end(const JobInfo& job);

    const JobServiceConfig m_config;
    daemon::SandboxService& m_service;
    std::unique_ptr<JobStore> m_store;
    GitCache m_git;
    JobRunner m_runner;

    std::mutex m_mutex;  // guards everything below
    std::condition_variable m_wake;
    bool m_stopping = false;
    bool m_disk_short = false;  // workers leave the queue alone while the disk is nearly full
    std::map<std::string, std::shared_ptr<JobControl>> m_active;      // running jobs
    std::map<std::string, JobInfo> m_leases;  // running jobs' claims (host, attempts): what renew_lease names
    std::map<std::string, std::map<std::string, std::string>> m_secrets;  // by pipeline: secret values given at submit
    std::vector<std::function<void(const JobInfo&)>> m_listeners;
    std::vector<std::function<void(const PipelineInfo&)>> m_pipeline_listeners;
    std::vector<std::thread> m_threads;
    std::unique_ptr<PgListener> m_listener;  // with listen_url: other hosts' NOTIFYs wake m_wake
};

}  // namespace kiln::ci
