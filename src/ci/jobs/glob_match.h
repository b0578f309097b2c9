// Matching the pipeline's `junit` and `artifacts` globs against the checkout's file list on the
// host (never by a guest shell, so a glob cannot be a command).
#pragma once

#include <string>
#include <vector>

namespace kiln::ci {

// `pattern` is split at '/': each segment matches one path segment with fnmatch(3) rules (no
// FNM_PERIOD: `*` matches dot files too), and a `**` segment matches zero or more segments.
bool glob_match(const std::string& pattern, const std::string& path);
// The paths matching any of `patterns`, in the order of `paths`, each once.
std::vector<std::string> glob_filter(const std::vector<std::string>& patterns, const std::vector<std::string>& paths);

}  // namespace kiln::ci
