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
    }
    return "error";
}

}  // namespace kiln::ci
