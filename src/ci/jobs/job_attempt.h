// JobAttempt: one attempt of one job, as the phases it runs in this order (docs/ci.md, "A job", and
// docs/pipeline.md): prepare_source, choose_secrets, choose_template, gather_needs, run_vms,
// conclude; and tear_down, which destroys every VM of the attempt on every path. JobRunner::run is
// that sequence. A phase that can end the attempt returns false when it did, with the outcome set;
// the phases after it are then skipped.
//
// run_vms runs the job's VMs: its own (start_vm, check_out, bake_on_miss, copy_needs, run_steps,
// collect_results), or, for a sharded job (`parallel: N`), N of them at once, one thread each:
// forked from the job's VM after its `fork_after` step (job_shards.cpp), or N fresh VMs that each
// run the whole job. A failing shard does not stop the others; a VM that fails under a shard ends
// the attempt as an error.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ci/jobs/checkout_tar.h"
#include "ci/jobs/job_runner.h"
#include "ci/jobs/pipeline_source.h"
#include "ci/pipeline/pipeline.h"

namespace kiln::ci {

// One VM of an attempt: the job's own (shard -1), or a shard's (0-based).
struct AttemptVm {
    int shard = -1;
    std::string sandbox_id;  // "" until created or forked, and again once removed
    std::shared_ptr<daemon::SandboxLease> lease;  // what the agent calls go through
    vm::AgentClient* agent = nullptr;
    bool stuck = false;   // a step's command could not be ended: nothing more is read from the VM
    bool passed = true;   // every step it ran passed
};

class JobAttempt {
public:
    using Env = std::map<std::string, std::string>;
    using Progress = std::function<void(const RunOutcome&)>;

    // Everything passed by reference must outlive the attempt (JobRunner::run's arguments).
    // `source`: .kiln.yml already loaded for this commit (JobRunner::run), or null.
    JobAttempt(JobRunner& runner, const JobInfo& job, const Env& spec_secrets, JobLog& log, JobControl& control,
               const Progress& progress, const LoadedPipeline* source = nullptr);
    // Tears down if tear_down() was not reached (a phase threw): the VMs go on every path.
    ~JobAttempt();
    JobAttempt(const JobAttempt&) = delete;
    JobAttempt& operator=(const JobAttempt&) = delete;

    // Marks the attempt in the log. The commit in kilnd's cache repository and its .kiln.yml, read
    // and parsed on the host, planned (plan_pipeline) to find this job's definition and matrix
    // values; the job's cap starts; the checkout's tar starts on its own thread, to be ready as the
    // VM is.
    bool prepare_source();
    // The secrets' values (trusted jobs only, the names the pipeline asks for, where the secret
    // policy lets them go), masked in the log in every form secret_forms gives.
    void choose_secrets();
    // What the VMs are created from: a bake's snapshot when the bake key (which holds the job's
    // repository) was baked before, else the pipeline's template, which allowed_template checks.
    bool choose_template();
    // template: a built-in template or a bake of the job's own repository, else the job fails.
    bool allowed_template(const std::string& repository);
    // The artifacts of the jobs this one needs (JobInfo::needs), as one tar on the host, which
    // copy_needs extracts in each VM under /work/needs/<job name>/ (job_needs.cpp).
    bool gather_needs();
    // The job's VM and steps, or its shards' (see the top of this file), up to its results.
    bool run_vms();
    // Passed or failed, from the steps of every VM (after run_vms).
    void conclude();
    // Destroys every VM of the attempt still there and removes the tars it made. Idempotent;
    // only once no shard thread runs (run_vms joins them on every path).
    void tear_down();

    RunOutcome take_outcome() { return std::move(m_outcome); }

private:
    // ---- one VM's phases (each: false when the attempt ended) ----
    // Creates `vm` from the template and leases it.
    bool start_vm(AttemptVm& vm);
    // The lease the agent calls of a created or forked VM go through.
    bool lease_vm(AttemptVm& vm);
    // The exact commit in the VM: one command extracts the tar and git confirms HEAD.
    bool check_out(AttemptVm& vm);
    // On a bake key miss: the bake runs in this VM (no secrets); the job's VM, or shard 0's of
    // fresh shards, is then snapshotted for the next jobs with this key and goes on as the job's.
    bool bake_on_miss(AttemptVm& vm);
    // The needed jobs' artifacts into the VM: one command extracts gather_needs' tar (job_needs.cpp).
    bool copy_needs(AttemptVm& vm);
    // The definition's steps [first, end) in order; the first that does not pass skips the rest.
    bool run_steps(AttemptVm& vm, size_t first, size_t end);
    // JUnit totals (added to the job's) and artifacts (a shard's as shard-<i>/<name>), read by the
    // host through the agent.
    bool collect_results(AttemptVm& vm);
    // Destroys the VM now (a shard's, as soon as it is done). Idempotent.
    void remove_vm(AttemptVm& vm);

    // ---- shards (job_shards.cpp) ----
    // After the job's VM ran the steps up to fork_after: forks it once per shard, removes it, and
    // runs the remaining steps in every child at once.
    bool run_forked_shards(AttemptVm& parent);
    // Without fork_after: one fresh VM per shard, each running the whole job, all at once.
    bool run_fresh_shards();
    // One shard's thread: `phases` in `vm`, then the VM goes at once (its memory back to the
    // shards still running). A shard that ends the attempt (its VM failed, cancel, the cap) makes
    // the others stop between steps; a shard whose steps fail does not.
    void run_shard(AttemptVm& vm, const std::function<bool()>& phases);
    // A new VM of the attempt (tear_down removes what it holds).
    AttemptVm& add_vm(int shard);
    // The step records: one per step of the job's own VM, or for shards those before the fork once
    // and the rest once per shard. Where step `step` run by `shard` is recorded.
    std::vector<StepRecord> planned_step_records() const;
    size_t record_index(int shard, size_t step) const;

    // ---- how an attempt ends ----
    // The attempt ends with `state`, unless it already ended (a shard's end, the first, is the
    // job's): returns false, for `return fail(...)` in a phase. Thread-safe.
    bool fail(JobState state, std::string error, bool retryable = false);
    // An agent or VM call failed: a cancel or the cap if the watchdog stopped the job (it destroyed
    // the VMs), else an infrastructure error the queue may retry. Returns false.
    bool vm_failure(const std::string& what, const Error& error);
    // The watchdog stopped the job (cancel or cap) before or between VM calls. Returns false.
    bool stopped_by_watchdog() { return vm_failure("", Error{}); }
    bool ended();
    // Milliseconds left before the job's cap (at least 1, so that a request carries a timeout).
    int64_t left_ms() const;
    // What may leave the VM (docs/network.md): the trusted or the untrusted jobs' policy.
    const daemon::net::NetworkPolicy& network() const;
    // A VM's TTL: the job's cap and a margin, within kilnd's limit (the watchdog removes it sooner).
    int64_t vm_ttl_seconds() const;
    // A VM's labels: ci_job, and ci_shard for a shard's.
    daemon::Labels vm_metadata(int shard) const;

    // ---- steps ----
    // Every step's environment before its own: the pipeline's, then CI, KILN_JOB_ID,
    // KILN_COMMIT_SHA, the matrix values, KILN_JOB_NAME, KILN_PIPELINE_ID, KILN_NEEDS_DIR, and a
    // shard's KILN_SHARD_INDEX and KILN_SHARD_COUNT.
    Env job_env(int shard) const;
    // Runs `script` as the step `name` in `vm`, its record in `record` (and the log; published as the
    // job's record `index` when it starts, if given). An error only when the VM failed under it; a
    // step that failed or timed out is recorded and ok.
    Status run_script(AttemptVm& vm, const std::string& name, const std::string& script, const Env& env,
                      std::optional<uint32_t> timeout_seconds, StepRecord& record, std::optional<size_t> index);
    // The job's record `index` becomes `record`; progress is reported. Thread-safe.
    void publish_step(size_t index, const StepRecord& record);
    // Records still pending when the attempt is over (a shard never forked, say) are skipped.
    void skip_pending_steps();
    // A log event, with "shard" when `vm` is a shard's.
    void event(const AttemptVm& vm, nlohmann::json event);

    // ---- results: collect_results' parts; false when the VM failed (the attempt ended) ----
    bool list_checkout(AttemptVm& vm, std::vector<std::string>& files);
    // The files matching `globs` (the pipeline's `key`), with a warning in the log if matching was cut short.
    std::vector<std::string> matching_files(const AttemptVm& vm, const std::vector<std::string>& globs,
                                            const std::vector<std::string>& files, const char* key);
    bool read_junit_reports(AttemptVm& vm, const std::vector<std::string>& files);
    bool copy_artifacts(AttemptVm& vm, const std::vector<std::string>& files);

    // What the attempt was given.
    JobRunner& m_runner;
    const JobInfo& m_job;
    const Env& m_spec_secrets;
    JobLog& m_log;  // thread-safe
    JobControl& m_control;  // shared with the watchdog: cancel, the cap, the VMs it destroys to stop the job
    const Progress& m_progress;
    const LoadedPipeline* m_preloaded;  // the planner's load of .kiln.yml, or null
    const std::string m_job_dir;  // <jobs_dir>/<id>: the tars while the job starts, artifacts

    // What it has come to: the record so far, and its end once a phase ended it. Shard threads
    // write it: m_mutex guards it, m_ended, and the calls of m_progress.
    std::mutex m_mutex;
    RunOutcome m_outcome;
    bool m_ended = false;

    // The source: the cache repository holding the commit, this job's part of the parsed .kiln.yml,
    // the checkout's tar.
    std::string m_cache_repo;
    JobDefinition m_def;                        // this job's definition
    std::string m_planned_name;                 // its PlannedJob name (KILN_JOB_NAME)
    std::map<std::string, std::string> m_matrix;  // its matrix values, axis -> value
    int m_shards = 1;                           // VMs its steps fan out to (`parallel`)
    std::optional<size_t> m_fork_index;         // with shards: the fork_after step's index
    std::optional<CheckoutTar> m_checkout_tar;
    std::atomic<int> m_checkouts_left{1};       // VMs still to read the tar (it goes after the last)
    std::string m_needs_tar;                    // gather_needs' tar; "": the job needs no job

    Env m_secret_env;  // only the steps get these, never the bake

    // What the VMs are created from.
    std::string m_template_id;
    std::string m_template_shown;        // what the log and errors call it: never a snapshot's id
    bool m_template_is_snapshot = false;  // template: names one of this repository's bakes

    // Every VM of the attempt (stable addresses: shard threads hold them); tear_down removes them.
    std::vector<std::unique_ptr<AttemptVm>> m_vms;
    std::atomic<bool> m_abandoned{false};  // the attempt ended under one shard: the others stop between steps
    std::atomic<uint64_t> m_artifact_bytes{0};  // all shards' artifacts together, against the 1 GiB bound
};

}  // namespace kiln::ci
