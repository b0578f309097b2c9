// The pruner's choice (see job_retention.h).
#include "ci/jobs/job_retention.h"

#include <algorithm>

namespace kiln::ci {

std::vector<std::string> mirror_folders(const std::string& git_dir) {
    return {git_dir + "/local", git_dir + "/remote", git_dir};
}

std::vector<std::string> checkout_staging_folders(const std::string& git_dir) {
    return {git_dir + "/local/work", git_dir + "/remote/work"};
}

PruneChoice choose_prunable(std::vector<PruneCandidate> candidates, int64_t now_ms, int64_t max_age_ms, uint64_t max_bytes) {
    // Oldest first; the name breaks ties so that the choice does not depend on listing order.
    std::sort(candidates.begin(), candidates.end(), [](const PruneCandidate& a, const PruneCandidate& b) {
        return a.last_used_ms != b.last_used_ms ? a.last_used_ms < b.last_used_ms : a.name < b.name;
    });
    uint64_t total = 0;
    for (const auto& c : candidates) total += c.bytes;
    PruneChoice choice;
    std::vector<const PruneCandidate*> kept;
    for (const auto& c : candidates) {
        if (!c.in_use && max_age_ms > 0 && c.last_used_ms < now_ms - max_age_ms) {
            choice.expired.push_back(c.name);
            total -= c.bytes;
        } else {
            kept.push_back(&c);
        }
    }
    if (max_bytes == 0) return choice;
    for (const PruneCandidate* c : kept) {
        if (total <= max_bytes) break;
        if (c->in_use) continue;
        choice.over_cap.push_back(c->name);
        total -= c->bytes;
    }
    return choice;
}

}  // namespace kiln::ci
