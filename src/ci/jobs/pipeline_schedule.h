// The pure parts of the pipeline scheduler, kept apart from the queue's threads and the store so
// that they can be tested alone: the job rows a pipeline's plan makes, and how a pipeline moves on
// when its jobs end (waiting jobs queued or skipped, the pipeline's own end). docs/pipeline.md.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ci/jobs/job_service.h"
#include "ci/pipeline/pipeline.h"

namespace kiln::ci {

// The rows of a planned pipeline. `first` is the job the pipeline was submitted with (name ""),
// which takes the first planned job that needs nothing (one always exists: needs have no cycle);
// the others are new rows (ids from `new_id`), queued when they need nothing, else waiting, their
// needs as ids. Rows are in plan order (`first` where its planned job is).
std::vector<JobInfo> plan_rows(const JobInfo& first, const std::vector<PlannedJob>& plan,
                               const std::function<std::string()>& new_id);

// What advance_pipeline changed.
struct PipelineAdvance {
    std::vector<size_t> changed_jobs;  // indices in PipelineInfo::jobs
    bool pipeline_changed = false;     // state (and error, finished_at) of the pipeline
};

// Moves `p` on after some of its jobs ended: every waiting job whose needs have all ended is
// queued when they all passed, else skipped (its error names the needs that did not pass, and a
// skip makes its own dependents skip in turn); when every job has ended the pipeline ends:
// cancelled if `p.cancel_requested`, else failed when a job failed, else error when one errored, else
// cancelled when one was, else passed (a skip always follows one of those). A pipeline not yet planned (its one job
// unnamed) ends with that job.
PipelineAdvance advance_pipeline(PipelineInfo& p, int64_t now_ms);

}  // namespace kiln::ci
