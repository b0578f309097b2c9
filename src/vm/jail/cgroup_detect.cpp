// detect_cgroups(): which cgroup layout this host has and where kiln's parent cgroup goes.
// The rules are in cgroup.h's header comment and docs/cgroups.md; this file only applies them.
#include <sys/xattr.h>

#include <algorithm>
#include <optional>

#include "vm/jail/cgroup.h"
#include "vm/jail/cgroup_fs.h"
#include "vm/jail/cgroup_parse.h"

namespace kiln::vm::jail {
namespace {

const std::vector<std::string> kRequired = {"memory", "pids", "cpu"};

std::string join(const std::vector<std::string>& words, const char* separator) {
    std::string out;
    for (const std::string& word : words) out += (out.empty() ? "" : separator) + word;
    return out;
}

std::string parent_of(const std::string& path) {
    size_t at = path.rfind('/');
    if (at == std::string::npos || at == 0) return "/";
    return path.substr(0, at);
}

std::string base_name(const std::string& path) {
    size_t at = path.rfind('/');
    return at == std::string::npos ? path : path.substr(at + 1);
}

// systemd (v251+) marks a cgroup it delegated with the xattr trusted.delegate=1 (user.delegate=1
// from a user manager): the cgroup below it is then the unit's to manage.
bool marked_delegated(const std::string& dir) {
    for (const char* name : {"trusted.delegate", "user.delegate"}) {
        char value[4];
        ssize_t n = ::getxattr(dir.c_str(), name, value, sizeof value);
        if (n == 1 && value[0] == '1') return true;
    }
    return false;
}

// Only non-root cgroups have cgroup.type: a cgroup namespace's top that has it is a container's
// cgroup, which the container may manage, unlike the host's real root.
bool is_real_root(const std::string& dir) { return !cgroup_file_exists(dir + "/cgroup.type"); }

struct Attempt {
    std::optional<CgroupHost> host;
    std::string why_not;
};

Attempt try_v2(const std::vector<CgroupMount>& mounts, const std::vector<ProcCgroup>& procs,
               const CgroupOptions& options) {
    auto own = std::find_if(procs.begin(), procs.end(),
                            [](const ProcCgroup& p) { return p.hierarchy_id == "0" && p.controllers.empty(); });
    if (own == procs.end()) return {std::nullopt, "/proc/self/cgroup has no v2 (0::) line"};
    auto mount = std::find_if(mounts.begin(), mounts.end(), [&](const CgroupMount& m) {
        return m.v2 && cgroup_path_within(m.root, own->path);
    });
    if (mount == mounts.end()) return {std::nullopt, "no cgroup2 mount shows kilnd's cgroup " + own->path};

    const std::string mount_point = options.fs_root + mount->mount_point;
    std::string own_path = own->path;
    std::string own_dir = cgroup_dir(mount_point, mount->root, own_path);
    auto manageable = [&](const std::string& path, const std::string& dir) {
        return marked_delegated(dir) || (path == mount->root && !is_real_root(dir));
    };
    // A kilnd that already moved itself into its leaf (an earlier prepare in this process) is seen
    // in <delegated cgroup>/<leaf>: the delegated cgroup is still its parent.
    if (own_path != mount->root && base_name(own_path) == options.leaf_name) {
        std::string up_path = parent_of(own_path);
        std::string up_dir = parent_of(own_dir);
        if (cgroup_path_within(mount->root, up_path) && manageable(up_path, up_dir)) {
            own_path = up_path;
            own_dir = up_dir;
        }
    }
    const bool delegated = manageable(own_path, own_dir);
    const std::string base_dir = delegated ? own_dir : mount_point;

    Result<std::string> controllers_text = read_cgroup_file(base_dir + "/cgroup.controllers");
    if (!controllers_text.ok()) return {std::nullopt, controllers_text.error().message};
    std::vector<std::string> controllers = split_words(*controllers_text);
    std::vector<std::string> missing;
    for (const std::string& needed : kRequired) {
        if (std::find(controllers.begin(), controllers.end(), needed) == controllers.end()) missing.push_back(needed);
    }
    if (!missing.empty()) {
        return {std::nullopt, "the v2 tree at " + base_dir + " offers [" + join(controllers, " ") + "], without " +
                                  join(missing, ", ")};
    }

    CgroupHost host;
    host.version = CgroupVersion::V2;
    host.delegated = delegated;
    host.io = std::find(controllers.begin(), controllers.end(), "io") != controllers.end();
    if (delegated) host.leaf_dir = own_dir + "/" + options.leaf_name;
    CgroupHierarchy hierarchy;
    hierarchy.controllers = kRequired;
    if (host.io) hierarchy.controllers.push_back("io");
    hierarchy.mount_point = mount_point;
    hierarchy.own_dir = own_dir;
    hierarchy.base_dir = base_dir;
    hierarchy.parent_dir = base_dir + "/" + options.root_name;
    host.hierarchies.push_back(std::move(hierarchy));
    return {std::move(host), ""};
}

Attempt try_v1(const std::vector<CgroupMount>& mounts, const std::vector<ProcCgroup>& procs,
               const CgroupOptions& options) {
    CgroupHost host;
    host.version = CgroupVersion::V1;
    std::vector<std::string> missing;
    for (const std::string& controller : kRequired) {
        auto own = std::find_if(procs.begin(), procs.end(), [&](const ProcCgroup& p) {
            return std::find(p.controllers.begin(), p.controllers.end(), controller) != p.controllers.end();
        });
        if (own == procs.end()) {
            missing.push_back(controller);
            continue;
        }
        // The hierarchy may be mounted more than once (binds): any mount that shows kilnd's cgroup.
        auto mount = std::find_if(mounts.begin(), mounts.end(), [&](const CgroupMount& m) {
            return !m.v2 && m.has_option(controller) && cgroup_path_within(m.root, own->path);
        });
        if (mount == mounts.end()) {
            missing.push_back(controller);
            continue;
        }
        const std::string mount_point = options.fs_root + mount->mount_point;
        auto same = std::find_if(host.hierarchies.begin(), host.hierarchies.end(),
                                 [&](const CgroupHierarchy& h) { return h.mount_point == mount_point; });
        if (same != host.hierarchies.end()) {
            same->controllers.push_back(controller);  // co-mounted, e.g. "cpu,cpuacct" with "memory"
            continue;
        }
        CgroupHierarchy hierarchy;
        hierarchy.controllers = {controller};
        hierarchy.mount_point = mount_point;
        hierarchy.own_dir = cgroup_dir(mount_point, mount->root, own->path);
        hierarchy.base_dir = hierarchy.own_dir;
        hierarchy.parent_dir = hierarchy.base_dir + "/" + options.root_name;
        host.hierarchies.push_back(std::move(hierarchy));
    }
    if (!missing.empty()) return {std::nullopt, "no v1 hierarchy mounted for " + join(missing, ", ")};
    return {std::move(host), ""};
}

}  // namespace

std::string CgroupHost::describe() const {
    switch (version) {
        case CgroupVersion::V2: {
            if (hierarchies.empty()) return "cgroup v2: none";
            std::string text = "cgroup v2: " + hierarchies[0].parent_dir;
            text += delegated ? " (delegated; kilnd runs in " + leaf_dir + ")" : " (not delegated)";
            text += io ? ", io on" : ", no io controller";
            return text;
        }
        case CgroupVersion::V1: {
            std::string text = "cgroup v1:";
            for (const CgroupHierarchy& hierarchy : hierarchies)
                text += " " + join(hierarchy.controllers, ",") + " at " + hierarchy.parent_dir + ";";
            if (!hierarchies.empty()) text.pop_back();
            return text;
        }
    }
    return "cgroup: unknown";
}

Result<CgroupHost> detect_cgroups(const CgroupOptions& options) {
    if (!valid_cgroup_name(options.root_name) || !valid_cgroup_name(options.leaf_name) ||
        options.root_name == options.leaf_name) {
        return make_error(ErrorCode::InvalidArgument, "cgroup root name '" + options.root_name + "' or leaf name '" +
                                                          options.leaf_name + "' is not a valid, distinct cgroup name");
    }
    std::string mountinfo = TRY(read_cgroup_file(options.fs_root + "/proc/self/mountinfo"));
    std::string own = TRY(read_cgroup_file(options.fs_root + "/proc/self/cgroup"));
    std::vector<CgroupMount> mounts = parse_cgroup_mounts(mountinfo);
    std::vector<ProcCgroup> procs = parse_proc_cgroup(own);

    Attempt v2 = try_v2(mounts, procs, options);
    if (v2.host) return std::move(*v2.host);
    Attempt v1 = try_v1(mounts, procs, options);
    if (v1.host) return std::move(*v1.host);
    return make_error(ErrorCode::Unavailable,
                      "no cgroups kiln can put its VMs in (it needs the memory, pids and cpu controllers): cgroup v2: " +
                          v2.why_not + "; cgroup v1: " + v1.why_not);
}

}  // namespace kiln::vm::jail
