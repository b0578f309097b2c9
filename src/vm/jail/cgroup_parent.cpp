// kiln's parent cgroup: made once per hierarchy, set up so that its children can carry limits.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>

#include "base/errno_error.h"
#include "vm/jail/cgroup.h"
#include "vm/jail/cgroup_fs.h"
#include "vm/jail/cgroup_parse.h"

namespace kiln::vm::jail {
namespace {

// Concurrent creates must not see a parent that exists but does not yet pass its controllers on.
std::mutex g_prepare_mutex;

bool enables_all(const std::string& dir, const std::vector<std::string>& controllers) {
    Result<std::string> text = read_cgroup_file(dir + "/cgroup.subtree_control");
    if (!text.ok()) return false;
    std::vector<std::string> enabled = split_words(*text);
    for (const std::string& controller : controllers) {
        if (std::find(enabled.begin(), enabled.end(), controller) == enabled.end()) return false;
    }
    return true;
}

// v2: lets the children of `dir` use memory, pids and cpu (required) and io (when the host has it:
// a kernel or host that refuses it only costs the I/O weight).
Status enable_controllers(const std::string& dir, const CgroupHost& host) {
    const std::vector<std::string> required = {"memory", "pids", "cpu"};
    if (!enables_all(dir, required)) {
        Status enabled = write_cgroup_file(dir + "/cgroup.subtree_control", "+memory +pids +cpu");
        if (!enabled.ok()) {
            return make_error(enabled.error().code,
                              enabled.error().message +
                                  " (cgroup v2 lets only a cgroup without processes pass controllers to its children;"
                                  " run kilnd with systemd's Delegate=yes)");
        }
    }
    if (host.io && !enables_all(dir, {"io"})) (void)write_cgroup_file(dir + "/cgroup.subtree_control", "+io");
    return ok_status();
}

// v2 delegated: every process in kilnd's own cgroup (kilnd, and anything it started before) moves
// into the leaf, since the cgroup must be empty to enable controllers for its children. A process
// forked meanwhile lands in the old cgroup, hence the rounds.
Status move_into_leaf(const CgroupHost& host) {
    const std::string& own_dir = host.hierarchies[0].base_dir;
    TRY(make_cgroup_dir(host.leaf_dir, true));
    for (int round = 0; round < 20; ++round) {
        std::vector<int> pids = parse_pids(TRY(read_cgroup_file(own_dir + "/cgroup.procs")));
        if (pids.empty()) return ok_status();
        for (int pid : pids) {
            Status moved = write_cgroup_file(host.leaf_dir + "/cgroup.procs", std::to_string(pid));
            // A process that exited meanwhile is no longer there to move (ESRCH).
            if (!moved.ok() && cgroup_file_exists("/proc/" + std::to_string(pid))) return moved;
        }
    }
    return make_error(ErrorCode::Unavailable, "processes keep appearing in " + own_dir + "; cannot empty it into " +
                                                  host.leaf_dir);
}

Status prepare_v2(const CgroupHost& host) {
    const CgroupHierarchy& hierarchy = host.hierarchies[0];
    if (enables_all(hierarchy.parent_dir, {"memory", "pids", "cpu"})) return ok_status();
    if (host.delegated) TRY(move_into_leaf(host));
    TRY(enable_controllers(hierarchy.base_dir, host));
    TRY(make_cgroup_dir(hierarchy.parent_dir, true));
    return enable_controllers(hierarchy.parent_dir, host);
}

Status prepare_v1(const CgroupHost& host) {
    for (const CgroupHierarchy& hierarchy : host.hierarchies) {
        TRY(make_cgroup_dir(hierarchy.parent_dir, true));
        // Without use_hierarchy (old kernels' default) a v1 memory cgroup's usage does not count
        // against its parent's limit; it can only be set while the parent has no children.
        const std::string use_hierarchy = hierarchy.parent_dir + "/memory.use_hierarchy";
        if (!cgroup_file_exists(use_hierarchy)) continue;
        Result<std::string> value = read_cgroup_file(use_hierarchy);
        if (!value.ok()) return value.error();
        if (value->rfind("1", 0) != 0) TRY(write_cgroup_file(use_hierarchy, "1"));
    }
    return ok_status();
}

}  // namespace

Status prepare_cgroup_parent(const CgroupHost& host) {
    if (host.hierarchies.empty()) return make_error(ErrorCode::InvalidArgument, "no cgroup hierarchies to prepare");
    std::lock_guard lock(g_prepare_mutex);
    switch (host.version) {
        case CgroupVersion::V1:
            return prepare_v1(host);
        case CgroupVersion::V2:
            return prepare_v2(host);
    }
    return make_error(ErrorCode::Internal, "unknown cgroup version");
}

Status remove_cgroup_parent(const CgroupHost& host) {
    std::lock_guard lock(g_prepare_mutex);
    for (const CgroupHierarchy& hierarchy : host.hierarchies) {
        if (::rmdir(hierarchy.parent_dir.c_str()) != 0 && errno != ENOENT)
            return errno_error("rmdir " + hierarchy.parent_dir);
    }
    return ok_status();
}

}  // namespace kiln::vm::jail
