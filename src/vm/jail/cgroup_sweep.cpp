// sweep_cgroups(): the reconcile's part for cgroups, after a kilnd restart or crash.
#include <set>

#include "vm/jail/cgroup.h"
#include "vm/jail/cgroup_fs.h"
#include "vm/jail/cgroup_parse.h"

namespace kiln::vm::jail {

Result<int> sweep_cgroups(const CgroupHost& host, const std::string& prefix) {
    // The prefix must be a name's start: non-empty and without '/', so only kiln's own children
    // of kiln's own parent can match.
    if (!valid_cgroup_name(prefix))
        return make_error(ErrorCode::InvalidArgument, "cgroup sweep prefix '" + prefix + "' is empty or not a name");
    std::set<std::string> removed;
    std::set<std::string> failed;
    std::string first_failure;
    for (const CgroupHierarchy& hierarchy : host.hierarchies) {
        Result<std::vector<std::string>> children = list_child_cgroups(hierarchy.parent_dir);
        if (!children.ok()) {
            if (first_failure.empty()) first_failure = children.error().message;
            failed.insert(hierarchy.parent_dir);
            continue;
        }
        for (const std::string& name : *children) {
            if (name.compare(0, prefix.size(), prefix) != 0) continue;
            Status gone = kill_and_remove_cgroup(hierarchy.parent_dir + "/" + name, kCgroupEmptyBudget);
            if (gone.ok()) {
                removed.insert(name);
            } else {
                failed.insert(name);
                if (first_failure.empty()) first_failure = gone.error().message;
            }
        }
    }
    if (!failed.empty()) {
        std::string names;
        for (const std::string& name : failed) names += (names.empty() ? "" : ", ") + name;
        return make_error(ErrorCode::IoError, "could not sweep cgroup(s) " + names + ": " + first_failure);
    }
    return static_cast<int>(removed.size());
}

}  // namespace kiln::vm::jail
