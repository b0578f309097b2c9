#include "kilnd/e2b/envd_walk.h"

#include <algorithm>
#include <utility>

namespace kiln::daemon::e2b {

std::string join_path(const std::string& dir, const std::string& name) {
    return !dir.empty() && dir.back() == '/' ? dir + name : dir + "/" + name;
}

Result<std::vector<WalkEntry>> walk_dir(vm::AgentClient& agent, const std::string& root, uint32_t depth) {
    std::vector<WalkEntry> out;
    std::vector<std::pair<std::string, uint32_t>> pending{{root, 1}};
    bool first = true;
    while (!pending.empty()) {
        auto [dir, level] = std::move(pending.back());
        pending.pop_back();
        auto entries = agent.list(dir);
        if (!entries.ok()) {
            if (first) return entries.error();
            continue;  // a folder removed or unreadable since its parent was listed
        }
        first = false;
        for (auto& e : *entries) {
            if (out.size() >= kMaxWalkEntries)
                return make_error(ErrorCode::TooLarge, "more than " + std::to_string(kMaxWalkEntries) + " entries under " + root);
            std::string path = join_path(dir, e.name);
            // Symlinks are not followed: a link to a parent would loop.
            if (e.type == "dir" && level < depth) pending.emplace_back(path, level + 1);
            out.push_back(WalkEntry{std::move(path), std::move(e)});
        }
    }
    std::sort(out.begin(), out.end(), [](const WalkEntry& a, const WalkEntry& b) { return a.path < b.path; });
    return out;
}

}  // namespace kiln::daemon::e2b
