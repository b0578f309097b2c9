// Parsing job state names back, and which states are final.
#pragma once

#include <optional>
#include <string_view>

#include "ci/jobs/job_service.h"

namespace kiln::ci {

std::optional<JobState> parse_job_state(std::string_view name);
inline bool is_final(JobState s) { return s != JobState::Queued && s != JobState::Running && s != JobState::Waiting; }
std::optional<PipelineState> parse_pipeline_state(std::string_view name);
inline bool is_final(PipelineState s) { return s != PipelineState::Queued && s != PipelineState::Running; }

}  // namespace kiln::ci
