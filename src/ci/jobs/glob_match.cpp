// glob_match: segment-wise fnmatch with `**` (see glob_match.h).
#include "ci/jobs/glob_match.h"

#include <fnmatch.h>

namespace kiln::ci {
namespace {

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t slash = s.find('/', start);
        std::string part = s.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        if (!part.empty() && part != ".") out.push_back(part);
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    return out;
}

bool match_from(const std::vector<std::string>& pat, size_t pi, const std::vector<std::string>& path, size_t si) {
    if (pi == pat.size()) return si == path.size();
    if (pat[pi] == "**") {
        for (size_t k = si; k <= path.size(); ++k)
            if (match_from(pat, pi + 1, path, k)) return true;
        return false;
    }
    if (si == path.size()) return false;
    if (fnmatch(pat[pi].c_str(), path[si].c_str(), 0) != 0) return false;
    return match_from(pat, pi + 1, path, si + 1);
}

}  // namespace

bool glob_match(const std::string& pattern, const std::string& path) {
    auto pat = split(pattern);
    // Consecutive ** are one (keeps the search linear in practice).
    std::vector<std::string> compact;
    for (auto& p : pat)
        if (!(p == "**" && !compact.empty() && compact.back() == "**")) compact.push_back(p);
    return match_from(compact, 0, split(path), 0);
}

std::vector<std::string> glob_filter(const std::vector<std::string>& patterns, const std::vector<std::string>& paths) {
    std::vector<std::string> out;
    for (const auto& p : paths)
        for (const auto& g : patterns)
            if (glob_match(g, p)) {
                out.push_back(p);
                break;
            }
    return out;
}

}  // namespace kiln::ci
