// glob_match: segment-wise fnmatch with `**` (see glob_match.h), as a set of pattern positions
// advanced one path segment at a time (an NFA simulation): each (pattern segment, path segment)
// pair is compared at most once, so a pattern such as `**/a/**/a/.../**/b` costs at most
// pattern segments x path segments fnmatch calls where the old recursive search backtracked
// exponentially.
#include "ci/jobs/glob_match.h"

#include <fnmatch.h>

#include <algorithm>
#include <limits>

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

// A pattern segment, classified once: most are `**` or plain names, which need no fnmatch.
struct Segment {
    enum Kind { AnyFolders, Literal, Glob } kind;
    std::string text;
};

std::vector<Segment> compile(const std::string& pattern) {
    std::vector<Segment> out;
    for (auto& part : split(pattern)) {
        // Without *, ? or [ (or a \ escaping one), fnmatch with no flags in the C locale (kilnd
        // sets no other) matches exactly the same bytes.
        Segment::Kind kind = part == "**" ? Segment::AnyFolders
                             : part.find_first_of("*?[\\") == std::string::npos ? Segment::Literal
                                                                                : Segment::Glob;
        out.push_back({kind, std::move(part)});
    }
    return out;
}

// Adds to `states` every position reachable from it without taking a path segment: a `**` may
// match zero segments, so the position after it is reachable too (ascending, so runs of `**` chain).
void close_over_double_stars(const std::vector<Segment>& pat, std::vector<char>& states) {
    for (size_t pi = 0; pi < pat.size(); ++pi)
        if (states[pi] && pat[pi].kind == Segment::AnyFolders) states[pi + 1] = 1;
}

// False when the budget runs out (`matched` is then meaningless).
bool match_segments(const std::vector<Segment>& pat, const std::vector<std::string>& segments, uint64_t& budget,
                    bool& matched) {
    // states[pi]: the first pi pattern segments can match the path segments taken so far.
    std::vector<char> states(pat.size() + 1, 0), next(pat.size() + 1, 0);
    states[0] = 1;
    close_over_double_stars(pat, states);
    for (const std::string& segment : segments) {
        std::fill(next.begin(), next.end(), 0);
        bool any = false;
        for (size_t pi = 0; pi < pat.size(); ++pi) {
            if (!states[pi]) continue;
            const Segment& p = pat[pi];
            if (p.kind == Segment::AnyFolders) {
                next[pi] = 1;  // `**` takes this segment and may take more
                any = true;
                continue;
            }
            if (budget == 0) return false;
            --budget;
            if (p.kind == Segment::Literal ? p.text == segment : fnmatch(p.text.c_str(), segment.c_str(), 0) == 0) {
                next[pi + 1] = 1;
                any = true;
            }
        }
        if (!any) {
            matched = false;
            return true;
        }
        close_over_double_stars(pat, next);
        states.swap(next);
    }
    matched = states[pat.size()] != 0;
    return true;
}

}  // namespace

bool glob_match(const std::string& pattern, const std::string& path) {
    uint64_t unlimited = std::numeric_limits<uint64_t>::max();
    bool matched = false;
    match_segments(compile(pattern), split(path), unlimited, matched);
    return matched;
}

GlobFiltered glob_filter(const std::vector<std::string>& patterns, const std::vector<std::string>& paths,
                         uint64_t max_comparisons) {
    std::vector<std::vector<Segment>> compiled;
    for (const auto& g : patterns) compiled.push_back(compile(g));
    GlobFiltered out;
    uint64_t budget = max_comparisons;
    for (const auto& p : paths) {
        const std::vector<std::string> segments = split(p);
        for (const auto& pat : compiled) {
            bool matched = false;
            if (!match_segments(pat, segments, budget, matched)) {
                out.complete = false;
                return out;
            }
            if (matched) {
                out.paths.push_back(p);
                break;
            }
        }
    }
    return out;
}

}  // namespace kiln::ci
