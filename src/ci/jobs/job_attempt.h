// JobAttempt: one attempt of one job in a fresh VM, as the phases it runs in this order (docs/ci.md,
// "A job"): prepare_source, choose_secrets, choose_template, start_vm, check_out, bake_on_miss,
// run_steps, collect_results, conclude; and tear_down, which destroys the VM on every path.
// JobRunner::run is that sequence. A phase that can end the attempt returns false when it did, with
// the outcome set; the phases after it are then skipped.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ci/jobs/checkout_tar.h"
#include "ci/jobs/job_runner.h"
#include "ci/pipeline/pipeline.h"

namespace kiln::ci {

class JobAttempt {
public:
    using Env = std::map<std::string, std::string>;
    using Progress = std::function<void(const RunOutcome&)>;

    // Everything passed by reference must outlive the attempt (JobRunner::run's arguments).
    JobAttempt(JobRunner& runner, const JobInfo& job, const Env& spec_secrets, JobLog& log, JobControl& control,
               const Progress& progress);
    // Tears down if tear_down() was not reached (a phase threw): the VM goes on every path.
    ~JobAttempt();
    JobAttempt(const JobAttempt&) = delete;
    JobAttempt& operator=(const JobAttempt&) = delete;

    // Marks the attempt in the log. The commit in kilnd's cache repository and its .kiln.yml, read
    // and parsed on the host; the job's cap starts; the checkout's tar starts on its own thread,
    // to be ready as the VM is.
    bool prepare_source();
    // The secrets' values (trusted jobs only, the names the pipeline asks for, where the secret
    // policy lets them go), masked in the log in every form secret_forms gives.
    void choose_secrets();
    // What the VM is created from: a bake's snapshot when the bake key (which holds the job's
    // repository) was baked before, else the pipeline's template, which allowed_template checks.
    bool choose_template();
    // template: a built-in template or a bake of the job's own repository, else the job fails.
    bool allowed_template(const std::string& repository);
    // The job's VM, and a lease of it for the agent calls of the phases below.
    bool start_vm();
    // The exact commit in the VM: one command extracts the tar and git confirms HEAD.
    bool check_out();
    // On a bake key miss: the bake runs in this VM (no secrets), which is then snapshotted for the
    // next jobs with this key and goes on as this job's VM.
    bool bake_on_miss();
    // The steps in order; the first that does not pass skips the rest.
    bool run_steps();
    // JUnit totals and artifacts, read by the host through the agent.
    bool collect_results();
    // Passed or failed, from the steps (after collect_results).
    void conclude();
    // Destroys the VM (if one was created) and removes the checkout's tar. Idempotent.
    void tear_down();

    RunOutcome take_outcome() { return std::move(m_outcome); }

private:
    // The attempt ends with `state`: returns false, for `return fail(...)` in a phase.
    bool fail(JobState state, std::string error, bool retryable = false);
    // An agent or VM call failed: a cancel or the cap if the watchdog stopped the job (it destroyed
    // the VM), else an infrastructure error the queue may retry. Returns false.
    bool vm_failure(const std::string& what, const Error& error);
    // The watchdog stopped the job (cancel or cap) before or between VM calls. Returns false.
    bool stopped_by_watchdog() { return vm_failure("", Error{}); }
    // Milliseconds left before the job's cap (at least 1, so that a request carries a timeout).
    int64_t left_ms() const;
    // What may leave the VM (docs/network.md): the trusted or the untrusted jobs' policy.
    const daemon::net::NetworkPolicy& network() const;

    // Every step's environment before its own: the pipeline's, then CI, KILN_JOB_ID, KILN_COMMIT_SHA.
    Env job_env() const;
    // Runs `script` as the step `name`, its record in `record` (and the log). An error only when
    // the VM failed under it; a step that failed or timed out is recorded and ok.
    Status run_script(const std::string& name, const std::string& script, const Env& env,
                      std::optional<uint32_t> timeout_seconds, StepRecord& record);

    // collect_results' parts; false when the VM failed (the attempt ended).
    bool list_checkout(std::vector<std::string>& files);
    // The files matching `globs` (the pipeline's `key`), with a warning in the log if matching was cut short.
    std::vector<std::string> matching_files(const std::vector<std::string>& globs, const std::vector<std::string>& files,
                                            const char* key);
    bool read_junit_reports(const std::vector<std::string>& files);
    bool copy_artifacts(const std::vector<std::string>& files);

    // What the attempt was given.
    JobRunner& m_runner;
    const JobInfo& m_job;
    const Env& m_spec_secrets;
    JobLog& m_log;
    JobControl& m_control;  // shared with the watchdog: cancel, the cap, the VM it destroys to stop the job
    const Progress& m_progress;
    const std::string m_job_dir;  // <jobs_dir>/<id>: the tar while the job starts, artifacts

    // What it has come to: the record so far, and its end once a phase ended it.
    RunOutcome m_outcome;

    // The source: the cache repository holding the commit, the parsed .kiln.yml, the checkout's tar.
    std::string m_cache_repo;
    JobDefinition m_def;  // this job's definition in the parsed .kiln.yml
    std::optional<CheckoutTar> m_checkout_tar;

    Env m_secret_env;  // only the steps get these, never the bake

    // The VM: what it is created from, its sandbox id (tear_down removes it), the lease the agent
    // calls go through.
    std::string m_template_id;
    std::string m_template_shown;        // what the log and errors call it: never a snapshot's id
    bool m_template_is_snapshot = false;  // template: names one of this repository's bakes
    std::string m_sandbox_id;
    std::shared_ptr<daemon::SandboxLease> m_lease;
    vm::AgentClient* m_agent = nullptr;

    bool m_vm_stuck = false;   // a step's command could not be ended: nothing more is read from the VM
    bool m_all_passed = true;  // every step so far passed
};

}  // namespace kiln::ci
