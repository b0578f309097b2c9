// JobRunner: runs one attempt of a job (run(): a JobAttempt's phases, job_attempt.h and docs/ci.md:
// the VM from the template or a bake's snapshot, the exact commit checked out from a tar made on the
// host, the bake on a key miss, the needed jobs' artifacts, the steps (a sharded job's in N VMs),
// JUnit totals and artifacts, every VM destroyed whatever happened), and keeps the bakes within
// their bounds (collect_bakes()).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/clock.h"
#include "ci/jobs/job_service.h"
#include "ci/jobs/pipeline_source.h"
#include "ci/jobs/secret_policy.h"
#include "daemon/sandboxes/sandbox_service.h"

namespace kiln::ci {

class GitCache;
class JobLog;
class JobStore;

// The bake snapshots' names: ci-bake-<repo_tag of the repository>-<template key>.
inline constexpr const char* kBakeSnapshotPrefix = "ci-bake-";
// "ci-bake-<repo_tag(repository)>-": the start of the names of a repository's bakes.
std::string bake_snapshot_prefix(const std::string& repository);
inline constexpr int64_t kUnnamedBakeGraceMs = 10 * 60 * 1000;

struct RunnerConfig {
    std::string jobs_dir;                         // $DATA/jobs: <id>/log.ndjson, <id>/artifacts/
    daemon::Caller caller;                        // the internal CI token that owns job VMs and bakes
    std::map<std::string, std::string> secrets;   // kilnd's configured secret values by name
    SecretPolicy secret_policy;                   // where each may go (ci_secrets_policy); none: nowhere
    int64_t max_ttl_seconds = 86400;              // the service's limit on a sandbox's TTL
    // What may leave a job's VM (docs/network.md): trusted jobs, and untrusted ones (a fork's pull
    // request: none or an allowlist, never open; config validation refuses open).
    daemon::net::NetworkPolicy trusted_network;
    daemon::net::NetworkPolicy untrusted_network;
    // Bakes kept: after a new bake, the least recently used beyond this many are deleted (row and
    // snapshot), except those used within bake_min_idle_ms (a job may be between finding one and
    // creating its VM from it).
    int bakes_kept = 16;
    int64_t bake_min_idle_ms = 10 * 60 * 1000;
    // This kilnd's host_name: its bakes are its own (their snapshots' files are here), found,
    // kept and evicted apart from other hosts' (JobStore's bake rows are per host).
    std::string host;
};

// Shared by the worker running a job and the watchdog that enforces cancel and the hard cap:
// the watchdog destroys every VM the job has (its own, and its shards'), which ends whatever the
// worker and its shard threads wait on.
struct JobControl {
    std::atomic<bool> cancel{false};
    std::atomic<bool> timed_out{false};
    std::atomic<int64_t> deadline_ms{0};  // monotonic_ms(); 0: none yet
    // The job's lease went to another attempt (this host was taken for lost): its VMs are
    // destroyed and nothing more of this attempt is written to the job.
    std::atomic<bool> lease_lost{false};

    // A VM of the job, from its create or fork until it is removed.
    void add_sandbox(const std::string& id) {
        std::lock_guard lock(mutex);
        sandbox_ids.insert(id);
    }
    void remove_sandbox(const std::string& id) {
        std::lock_guard lock(mutex);
        sandbox_ids.erase(id);
    }
    std::vector<std::string> sandboxes() {
        std::lock_guard lock(mutex);
        return {sandbox_ids.begin(), sandbox_ids.end()};
    }
    bool stopped() const { return cancel || timed_out || lease_lost; }

private:
    std::mutex mutex;
    std::set<std::string> sandbox_ids;
};

struct RunOutcome {
    JobState state = JobState::Error;
    std::string error;
    bool retryable = false;  // an infrastructure error: the queue may try again (at most twice)
    std::string template_key;
    bool bake_hit = false;
    std::vector<StepRecord> steps;
    std::optional<JunitTotals> junit;
    std::vector<std::string> artifacts;
    int64_t steps_ms = 0;
};

class JobRunner {
public:
    JobRunner(RunnerConfig config, daemon::SandboxService& service, JobStore& store, GitCache& git);

    // `progress` is called as steps start and end (to keep the stored record current).
    // `source`: the commit's .kiln.yml as the worker that planned the pipeline just loaded it (the
    // pipeline's first job); null: the attempt loads it (load_pipeline).
    RunOutcome run(const JobInfo& job, const std::map<std::string, std::string>& spec_secrets, JobLog& log,
                   JobControl& control, const std::function<void(const RunOutcome&)>& progress,
                   const LoadedPipeline* source = nullptr);

    // The artifact files of a job: <jobs_dir>/<id>/artifacts/<index in JobInfo::artifacts>.
    std::string artifact_path(const std::string& job_id, size_t index) const;
    std::string log_path(const std::string& job_id) const;

    // Deletes this host's bakes beyond RunnerConfig::bakes_kept (see there), row first, and bake
    // snapshots on this host older than 10 minutes that no row names. Run after each new bake and at start-up.
    void collect_bakes();

private:
    friend class JobAttempt;  // an attempt runs on its runner's configuration, services and git cache

    bool held_here(const daemon::SnapshotInfo& snap) const;

    RunnerConfig m_config;
    daemon::SandboxService& m_service;
    JobStore& m_store;
    GitCache& m_git;
    std::mutex m_eviction;  // one eviction at a time: two workers would pick the same bakes
};

}  // namespace kiln::ci
