// JobService: kilnd's CI queue. Jobs come from `kiln ci run` (POST /v1/jobs), the GitHub webhook
// and the GitLab executor; workers run each in a fresh sandbox and record the result.
// Thread-safe. This header is the seam between the queue/worker and the integrations.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace kiln::ci {

enum class JobState { Queued, Running, Passed, Failed, Error, Cancelled };
const char* job_state_name(JobState state);

struct JobSpec {
    std::string repo;          // a git URL or an absolute local path on kilnd's host (canonical once queued)
    std::string sha;           // the exact commit (40 hex); required when ref is empty
    std::string ref;           // when sha is empty: resolved to a SHA by the worker that claims the job
    // Set by the API for an admin token: any URL (ci_repos does not apply) and local paths.
    // Not stored: it is decided when the job is queued.
    bool any_repo = false;
    bool trusted = true;       // false: a fork PR - no secrets, restricted network
    std::map<std::string, std::string> secrets;  // values for the pipeline's secret names (trusted only)
    std::string source;        // "cli" | "github" | "gitlab"
    std::map<std::string, std::string> labels;   // e.g. github delivery, PR number, repo full name
    int64_t owner_token_id = 0;
};

struct JunitTotals {
    int64_t tests = 0, failures = 0, errors = 0, skipped = 0;
};

struct StepRecord {
    std::string name;
    std::string state;  // pending | running | passed | failed | timed_out | skipped
    int exit_code = -1;
    int64_t duration_ms = 0;
};

struct JobInfo {
    std::string id;  // job-<12 hex>
    JobState state = JobState::Queued;
    JobSpec spec;
    std::string sha;  // resolved; "" while a job queued with a ref waits for a worker
    int attempts = 0;
    // kilnd restarts that interrupted the job while it ran: the first puts it back in the queue
    // (the next attempt runs), a second ends it as error (LocalJobService::start).
    int restarts = 0;
    std::string error;
    std::string template_key;  // the baked template used (cache key)
    bool bake_hit = false;
    std::vector<StepRecord> steps;
    std::optional<JunitTotals> junit;
    std::vector<std::string> artifacts;  // relative names
    int64_t created_at_ms = 0, started_at_ms = 0, finished_at_ms = 0;
    int64_t steps_ms = 0;  // the steps' own run time (for the overhead figure)
};

class JobService {
public:
    virtual ~JobService() = default;
    virtual Result<JobInfo> submit(const JobSpec& spec) = 0;
    virtual Result<JobInfo> get(const std::string& id) = 0;
    // Newest first; owner 0: every owner's.
    virtual Result<std::vector<JobInfo>> list(int limit, int64_t owner_token_id = 0) = 0;
    // Jobs of this token still queued or running (its queued_jobs quota, docs/tenants.md).
    virtual Result<int64_t> unfinished_jobs(int64_t /*owner_token_id*/) { return int64_t(0); }
    virtual Status cancel(const std::string& id) = 0;
    // Called whenever a job changes state (for commit statuses); runs on a worker thread.
    virtual void on_state_change(std::function<void(const JobInfo&)> listener) = 0;
    // Where the job's NDJSON log and its artifacts (by index in JobInfo::artifacts) are on the
    // host, for the HTTP layer; "" when this service keeps none. (Added by the jobs helper.)
    virtual std::string log_path(const std::string& /*id*/) const { return ""; }
    virtual std::string artifact_path(const std::string& /*id*/, size_t /*index*/) const { return ""; }
};

}  // namespace kiln::ci
