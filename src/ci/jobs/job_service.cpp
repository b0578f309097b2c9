// Job state names, as the API and the store spell them.
#include "ci/jobs/job_service.h"

namespace kiln::ci {

const char* job_state_name(JobState state) {
    switch (state) {
        case JobState::Queued: return "queued";
        case JobState::Running: return "running";
        case JobState::Passed: return "passed";
        case JobState::Failed: return "failed";
        case JobState::Error: return "error";
        case JobState::Cancelled: return "cancelled";
        case JobState::Waiting: return "waiting";
        case JobState::Skipped: return "skipped";
    }
    return "error";
}

const char* pipeline_state_name(PipelineState state) {
    switch (state) {
        case PipelineState::Queued: return "queued";
        case PipelineState::Running: return "running";
        case PipelineState::Passed: return "passed";
        case PipelineState::Failed: return "failed";
        case PipelineState::Error: return "error";
        case PipelineState::Cancelled: return "cancelled";
    }
    return "error";
}

}  // namespace kiln::ci
