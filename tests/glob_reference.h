// The CI glob matcher's reference semantics: the recursive search src/ci/jobs/glob_match.cpp used
// before it became linear. Exponential on `**/a/**/a/...`, obviously right: the unit test and the
// fuzz target compare the real matcher with it on inputs where it is cheap.
#pragma once

#include <fnmatch.h>

#include <string>
#include <vector>

namespace kiln::testing {

inline std::vector<std::string> glob_reference_split(const std::string& s) {
    std::vector<std::string> out;
    std::string part;
    for (size_t i = 0; i <= s.size(); ++i) {
        if (i == s.size() || s[i] == '/') {
            if (!part.empty() && part != ".") out.push_back(part);
            part.clear();
        } else {
            part += s[i];
        }
    }
    return out;
}

inline bool glob_reference_match(const std::vector<std::string>& pat, size_t pi, const std::vector<std::string>& path,
                                 size_t si) {
    if (pi == pat.size()) return si == path.size();
    if (pat[pi] == "**") {
        for (size_t k = si; k <= path.size(); ++k)
            if (glob_reference_match(pat, pi + 1, path, k)) return true;
        return false;
    }
    if (si == path.size()) return false;
    if (fnmatch(pat[pi].c_str(), path[si].c_str(), 0) != 0) return false;
    return glob_reference_match(pat, pi + 1, path, si + 1);
}

inline bool glob_reference(const std::string& pattern, const std::string& path) {
    return glob_reference_match(glob_reference_split(pattern), 0, glob_reference_split(path), 0);
}

}  // namespace kiln::testing
