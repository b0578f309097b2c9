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

// Waiting: its `needs` have not all ended yet. Skipped: one of them did not pass (the job never ran;
// its error says which).
enum class JobState { Queued, Running, Passed, Failed, Error, Cancelled, Waiting, Skipped };
const char* job_state_name(JobState state);

// A pipeline run: every job of one commit's .kiln.yml (docs/pipeline.md). Queued until a worker
// plans it (reads the file and records its jobs), then running until every job has ended.
enum class PipelineState { Queued, Running, Passed, Failed, Error, Cancelled };
const char* pipeline_state_name(PipelineState state);

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
    // Not "": a second submit with the same key makes no pipeline and returns the first's job (a
    // webhook delivery received by several hosts, or redelivered after a crash, makes one job).
    std::string submit_key;
    int64_t owner_token_id = 0;
};

struct JunitTotals {
    int64_t tests = 0, failures = 0, errors = 0, skipped = 0;
};

struct StepRecord {
    std::string name;
    std::string state;  // pending | running | passed | failed | timed_out | cancelled | skipped
    int exit_code = -1;
    int64_t duration_ms = 0;
    int64_t started_at_ms = 0;  // unix ms; 0 while it has not started
    int shard = -1;             // the shard (0-based) that ran it; -1: the job's own VM, before any fan-out
};

struct JobInfo {
    std::string id;  // job-<12 hex>
    JobState state = JobState::Queued;
    JobSpec spec;    // its pipeline's
    std::string pipeline_id;  // pipeline-<12 hex>
    // Its PlannedJob name ("lint", "test (18, debian)"); "" for the pipeline's first job until a
    // worker has planned the pipeline.
    std::string name;
    std::vector<std::string> needs;  // ids of the jobs of the same pipeline it runs after
    std::string sha;  // resolved; "" while a job queued with a ref waits for a worker
    // Claims of the job so far (an infrastructure error's retry is one more). With `host`, the
    // fence of every write the running host makes: a write names the claim it belongs to.
    int attempts = 0;
    // Interruptions of a run (a kilnd restart on its host, or its host lost: the lease expired):
    // the first puts it back in the queue (the next attempt runs), a second ends it as error.
    int restarts = 0;
    // 1, or 2 once an interruption put it back in the queue; `attempt_reason` says why
    // ("attempt 2: host b lost (its lease expired)"), "" for attempt 1.
    int attempt = 1;
    std::string attempt_reason;
    // The kilnd host (host_name) holding the job's lease while it runs; once ended, the host that
    // ran it; "" while queued.
    std::string host;
    std::string error;
    std::string template_key;  // the baked template used (cache key)
    bool bake_hit = false;
    std::vector<StepRecord> steps;
    std::optional<JunitTotals> junit;
    std::vector<std::string> artifacts;  // relative names; a sharded job's are "shard-<i>/<name>"
    int64_t created_at_ms = 0, started_at_ms = 0, finished_at_ms = 0;
    int64_t steps_ms = 0;  // the steps' own run time (for the overhead figure)
    int plan_index = 0;    // its place in the pipeline's plan (file order)
};

struct PipelineInfo {
    std::string id;  // pipeline-<12 hex>
    PipelineState state = PipelineState::Queued;
    JobSpec spec;     // what was submitted (never its secrets)
    std::string sha;  // resolved; "" until planned when queued with a ref
    std::string error;  // why it failed or errored: the file's problems, or the jobs that did not pass
    int64_t created_at_ms = 0, started_at_ms = 0, finished_at_ms = 0;
    bool cancel_requested = false;  // cancel_pipeline was called: it ends as cancelled
    std::vector<JobInfo> jobs;  // in plan order (file order); get_pipeline and list_pipelines fill it
};

// A bake in the cache (GET /v1/bakes, the dashboard's templates page): its key and snapshot, when it
// was made and last used, and how many of the jobs still kept ran on it as a hit or baked it (miss).
struct BakeInfo {
    std::string key;
    std::string template_name;
    std::string snapshot_id;
    std::string host;  // the host that baked it and holds its snapshot (each host bakes a key for itself)
    int64_t created_at_ms = 0, used_at_ms = 0;
    int64_t hits = 0, misses = 0;
};

// One page of a list (GET /v1/jobs, /v1/pipelines with a cursor): newest first, after the row
// `before_id` (the last of the previous page; "" for the first), filtered by owner (0: every
// owner's), state name and repository ("": any).
struct ListPage {
    int limit = 100;
    int64_t owner_token_id = 0;
    std::string state;
    std::string repo;
    std::string before_id;
};

class JobService {
public:
    virtual ~JobService() = default;
    // Queues a pipeline; returns its first job (pipeline_id names the pipeline). Its other jobs
    // exist once a worker has read the commit's .kiln.yml.
    virtual Result<JobInfo> submit(const JobSpec& spec) = 0;
    virtual Result<JobInfo> get(const std::string& id) = 0;
    // Newest first; owner 0: every owner's.
    virtual Result<std::vector<JobInfo>> list(int limit, int64_t owner_token_id = 0) = 0;
    // Jobs of this token still queued or running (its queued_jobs quota, docs/tenants.md).
    virtual Result<int64_t> unfinished_jobs(int64_t /*owner_token_id*/) { return int64_t(0); }
    virtual Status cancel(const std::string& id) = 0;
    // Called whenever a job changes state (for commit statuses); runs on a worker thread.
    virtual void on_state_change(std::function<void(const JobInfo&)> listener) = 0;

    // Pipelines. get/list fill PipelineInfo::jobs. Cancelling a pipeline cancels every job of it
    // not yet ended (waiting and queued ones at once, running ones through the watchdog).
    virtual Result<PipelineInfo> get_pipeline(const std::string& /*id*/) { return no_pipelines(); }
    virtual Result<std::vector<PipelineInfo>> list_pipelines(int /*limit*/, int64_t /*owner_token_id*/ = 0) {
        return no_pipelines();
    }
    virtual Status cancel_pipeline(const std::string& /*id*/) { return no_pipelines(); }
    // Pages (ListPage): the store's own queries in LocalJobService; this service keeps none.
    virtual Result<std::vector<JobInfo>> list_page(const ListPage& /*page*/) { return no_pipelines(); }
    virtual Result<std::vector<PipelineInfo>> list_pipelines_page(const ListPage& /*page*/) { return no_pipelines(); }
    // The bake cache, most recently used first (at most `limit`).
    virtual Result<std::vector<BakeInfo>> list_bakes(int /*limit*/) { return no_pipelines(); }
    // Called whenever a pipeline changes state; runs on a worker (or HTTP) thread.
    virtual void on_pipeline_change(std::function<void(const PipelineInfo&)> /*listener*/) {}
    // Where the job's NDJSON log and its artifacts (by index in JobInfo::artifacts) are on the
    // host, for the HTTP layer; "" when this service keeps none. (Added by the jobs helper.)
    virtual std::string log_path(const std::string& /*id*/) const { return ""; }
    virtual std::string artifact_path(const std::string& /*id*/, size_t /*index*/) const { return ""; }

private:
    static Error no_pipelines() { return make_error(ErrorCode::Unavailable, "this job service keeps no pipelines"); }
};

}  // namespace kiln::ci
