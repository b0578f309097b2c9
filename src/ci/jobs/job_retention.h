// Retention of CI's files and rows: what the periodic pruner (LocalJobService) deletes. Finished
// jobs' dirs (log, artifacts) and rows past an age, then the oldest finished jobs' files while all
// job dirs pass a byte cap; git mirrors under ci/git no job fetched from for a while, then the
// least recently used while they pass their cap. Never a job that has not finished, nor a
// mirror a queued or running job needs. The choice is a pure function, tested on its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::ci {

// A mirror being pruned is first renamed to <name><kPruningSuffix> (instantly, while no job can
// be claimed), then deleted; the start-up sweep removes one a crash left.
inline constexpr const char* kPruningSuffix = ".pruning";

// The folders under ci/git that hold mirrors (<hash>.git): the two areas of git_source.h (local
// paths, URLs) and ci/git itself, where kilnds before the areas kept them (those age out).
std::vector<std::string> mirror_folders(const std::string& git_dir);
// The areas' staging folders, where a job's checkout is made before it is tarred (work/<job>).
std::vector<std::string> checkout_staging_folders(const std::string& git_dir);

struct RetentionConfig {
    int64_t job_max_age_ms = 30ll * 86400 * 1000;  // ci_job_retention_days; 0: kept
    uint64_t jobs_max_bytes = 0;                   // ci_jobs_max_gib; 0: no cap
    int64_t git_max_age_ms = 14ll * 86400 * 1000;  // ci_git_retention_days; 0: kept
    uint64_t git_max_bytes = 0;                    // ci_git_max_gib; 0: no cap
    int64_t interval_ms = 3600 * 1000;             // retention_interval_seconds
};

struct PruneCandidate {
    std::string name;          // a job id, or a mirror's folder name
    bool in_use = false;       // a job not finished, a mirror such a job needs: never chosen
    int64_t last_used_ms = 0;  // unix ms: when the job finished, when the mirror was last fetched from
    uint64_t bytes = 0;        // allocated on disk
};

struct PruneChoice {
    std::vector<std::string> expired;   // past the age limit, oldest first
    std::vector<std::string> over_cap;  // then the oldest of the rest, until the total fits the cap
};

// What to delete among `candidates` at `now_ms` (max_age_ms 0: no age limit; max_bytes 0: no cap).
// The cap counts every candidate's bytes, those in use too (they are on the disk all the same),
// so when those alone pass it everything else goes.
PruneChoice choose_prunable(std::vector<PruneCandidate> candidates, int64_t now_ms, int64_t max_age_ms, uint64_t max_bytes);

}  // namespace kiln::ci
