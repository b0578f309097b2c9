// parse_pipeline: a `.kiln.yml` file's text to a validated Pipeline, or every problem with its line.
#pragma once

#include <string_view>
#include <vector>

#include "base/result.h"
#include "ci/pipeline/pipeline.h"
#include "ci/pipeline/source_issue.h"

namespace kiln::ci {

// Every problem found (up to a bound), in file order; `pipeline` is set only when there are none.
struct PipelineParse {
    std::optional<Pipeline> pipeline;
    std::vector<SourceIssue> issues;
};
PipelineParse parse_pipeline_detailed(std::string_view text);

// The same as a Result: Error{ErrorCode::InvalidPipeline, one issue per line}. Never throws.
Result<Pipeline> parse_pipeline(std::string_view text);

}  // namespace kiln::ci
