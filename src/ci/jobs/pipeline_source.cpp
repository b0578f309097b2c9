// load_pipeline: fetch, read and parse a commit's .kiln.yml (see pipeline_source.h).
#include "ci/jobs/pipeline_source.h"

#include "ci/jobs/git_source.h"
#include "ci/pipeline/pipeline_parser.h"

namespace kiln::ci {
namespace {
constexpr size_t kMaxPipelineBytes = 256 * 1024;
}

std::variant<LoadedPipeline, PipelineLoadError> load_pipeline(GitCache& git, const JobSpec& spec, const std::string& sha) {
    auto cache_repo = git.fetch(spec.repo, sha, spec.ref);
    if (!cache_repo.ok()) {
        // A bad repository, an unknown commit, one past the size cap or a server that does not
        // answer in time is the job's; anything else may pass on a retry.
        const ErrorCode code = cache_repo.error().code;
        bool user_error = code == ErrorCode::InvalidArgument || code == ErrorCode::NotFound ||
                          code == ErrorCode::TooLarge || code == ErrorCode::Timeout;
        return PipelineLoadError{"getting the code: " + cache_repo.error().message, !user_error};
    }
    auto yml = git.read_file(*cache_repo, sha, ".kiln.yml", kMaxPipelineBytes);
    if (!yml.ok()) return PipelineLoadError{"reading .kiln.yml: " + yml.error().message, false};
    if (!*yml) return PipelineLoadError{"the commit " + sha + " has no .kiln.yml at its top level", false};
    auto pipeline = parse_pipeline(**yml);
    if (!pipeline.ok()) return PipelineLoadError{".kiln.yml is invalid:\n" + pipeline.error().message, false};
    return LoadedPipeline{std::move(*cache_repo), std::move(*pipeline)};
}

}  // namespace kiln::ci
