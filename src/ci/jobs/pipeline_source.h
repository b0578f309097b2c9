// load_pipeline: a job's commit fetched into kilnd's cache repository and its .kiln.yml read and
// parsed there, on the host. The worker that plans a pipeline and each job's attempt both use it.
#pragma once

#include <string>
#include <variant>

#include "base/result.h"
#include "ci/jobs/job_service.h"
#include "ci/pipeline/pipeline.h"

namespace kiln::ci {

class GitCache;

struct LoadedPipeline {
    std::string cache_repo;  // the cache repository that holds the commit
    Pipeline pipeline;
};

// The problem as the job's error, with `retryable` when it may pass on a retry (an
// infrastructure error); a bad repository, an unknown commit, a missing or invalid .kiln.yml are
// the repository's and are not.
struct PipelineLoadError {
    std::string message;
    bool retryable = false;
};

// `sha` must be resolved (JobInfo::sha).
std::variant<LoadedPipeline, PipelineLoadError> load_pipeline(GitCache& git, const JobSpec& spec, const std::string& sha);

}  // namespace kiln::ci
