// Matching the pipeline's `junit` and `artifacts` globs against the checkout's file list on the
// host (never by a guest shell, so a glob cannot be a command).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::ci {

// `pattern` is split at '/': each segment matches one path segment with fnmatch(3) rules (no
// FNM_PERIOD: `*` matches dot files too), and a `**` segment matches zero or more segments.
// Empty and "." segments are ignored on both sides. At most (pattern segments x path segments)
// fnmatch calls, whatever the pattern: no backtracking.
bool glob_match(const std::string& pattern, const std::string& path);

// Comparisons (one fnmatch of a pattern segment against a path segment) one glob_filter may
// spend: ~1-3 s of CPU in the worst case, thousands of times what real globs over real trees
// need, so a hostile pipeline and tree cannot hold a CI worker for long.
inline constexpr uint64_t kGlobComparisonBudget = 50'000'000;

struct GlobFiltered {
    std::vector<std::string> paths;  // the paths matching any pattern, in input order, each once
    bool complete = true;            // false: the budget ran out and later paths were not tried
};
GlobFiltered glob_filter(const std::vector<std::string>& patterns, const std::vector<std::string>& paths,
                         uint64_t max_comparisons = kGlobComparisonBudget);

}  // namespace kiln::ci
