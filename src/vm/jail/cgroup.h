// A cgroup per VM: each QEMU runs under a hard memory limit (swap included), a pids limit, a CPU
// quota and, where the host offers it, an I/O weight, so one hostile guest cannot starve the host
// or the other sandboxes; when it hits its memory limit the kernel's OOM killer kills it alone.
//
// Two host layouts are handled (docs/cgroups.md says which host gets which, and why):
//   - cgroup v2 (current distributions): one tree. kiln's parent cgroup is `<kilnd's cgroup>/kiln`
//     when kilnd's cgroup is delegated to it (systemd `Delegate=yes`; kilnd then moves itself into
//     the leaf `<kilnd's cgroup>/kilnd`, since v2 allows no process in a cgroup that enables
//     controllers for its children), else `/sys/fs/cgroup/kiln`.
//   - cgroup v1 (older hosts, and the machines Kiln's own tests run on): one hierarchy per
//     controller. kiln's parent is `<kilnd's cgroup in that hierarchy>/kiln` in the memory, pids and
//     cpu hierarchies: `/sys/fs/cgroup/<controller>/kiln` when kilnd runs in the root cgroup, and
//     inside kilnd's own (delegated) cgroup when systemd gave it one, so the VMs stay within the
//     limits the operator set for the service.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"

namespace kiln::vm::jail {

enum class CgroupVersion { V1, V2 };

// A VM's limits. 0 in memory_bytes, pids_max or cpus means "no limit on that" (nothing is written).
struct CgroupLimits {
    uint64_t memory_bytes = 0;  // hard limit, swap included (v1 memory.limit_in_bytes + memsw; v2 memory.max, swap.max 0)
    uint32_t pids_max = 0;      // tasks, threads included: QEMU runs a thread per vCPU plus I/O workers
    uint32_t cpus = 1;          // CPU quota in whole CPUs (cpus * the 100 ms period)
    uint32_t io_weight = 0;     // 1..10000; 0 leaves it alone. v2 io.weight only where the io controller is on
};

// One cgroup hierarchy kiln uses: v1 has one per mounted controller set, v2 exactly one.
struct CgroupHierarchy {
    std::vector<std::string> controllers;  // those of memory, pids, cpu (and v2 io) it holds
    std::string mount_point;               // "/sys/fs/cgroup/memory"
    std::string own_dir;                   // kilnd's own cgroup in it, as a path
    std::string base_dir;                  // the cgroup kiln's parent is made in (v2: where controllers get enabled)
    std::string parent_dir;                // kiln's parent: base_dir/<root name>; each VM's cgroup is made in it
};

// What the host has, as detect_cgroups() found it.
struct CgroupHost {
    CgroupVersion version = CgroupVersion::V1;
    std::vector<CgroupHierarchy> hierarchies;
    // v2 only: kilnd's own cgroup is delegated to it (or is the root of its cgroup namespace), so
    // kiln's parent is made inside it and kilnd moves itself into leaf_dir first.
    bool delegated = false;
    std::string leaf_dir;
    bool io = false;  // v2 only: the io controller can be enabled for the VMs

    // "cgroup v1: memory at /sys/fs/cgroup/memory/kiln, pids at ..., cpu at ..." for logs and `kiln doctor`.
    std::string describe() const;
};

struct CgroupOptions {
    std::string root_name = "kiln";  // kiln's parent cgroup's name (tests use their own, e.g. kiln-test-<pid>)
    std::string leaf_name = "kilnd";  // v2 delegated: the leaf kilnd moves itself into
    // Prefixed to every path read ("/proc/self/mountinfo", the mount points): "" on a real host; tests
    // point it at a folder of fixture files to exercise the decisions without such a host.
    std::string fs_root;
};

// Reads /proc/self/mountinfo and /proc/self/cgroup (and the v2 tree's cgroup.controllers) and picks:
// v2 when memory, pids and cpu can be enabled in the subtree kiln would use, else v1 when all three
// are mounted as v1 hierarchies; else an `unavailable` error that says what each one lacks.
// Reads only: prepare_cgroup_parent() makes the parent.
Result<CgroupHost> detect_cgroups(const CgroupOptions& options = {});

// Makes kiln's parent cgroup in every hierarchy and sets it up: v1 memory.use_hierarchy; v2 moves
// kilnd into its leaf when delegated and enables memory, pids, cpu (and io) for the children.
// Idempotent and cheap once done; VmCgroup::create() calls it, and kilnd should call it at start so
// a host problem shows then, not at the first VM.
Status prepare_cgroup_parent(const CgroupHost& host);

// Removes kiln's parent cgroups if they are empty (never kills anything): for tests and uninstall.
Status remove_cgroup_parent(const CgroupHost& host);

class VmCgroup {
public:
    // Makes <kiln parent>/<name> in every hierarchy (v1: memory, pids, cpu; v2: one cgroup) and
    // writes the limits. `name` is [A-Za-z0-9_-], at most 128 characters;
    // a cgroup of that name already there is a conflict (sweep_cgroups() clears leftovers).
    static Result<std::unique_ptr<VmCgroup>> create(const CgroupHost& host, const std::string& name,
                                                    const CgroupLimits& limits);
    ~VmCgroup();
    VmCgroup(const VmCgroup&) = delete;
    VmCgroup& operator=(const VmCgroup&) = delete;

    // One fd per hierarchy, each its cgroup.procs opened O_WRONLY|O_CLOEXEC: a process joins by
    // a write of its pid (or "0" for the writer itself). kilnd writes QEMU's pid right after clone3,
    // while the child builds its jail (jail_spawn.cpp). Owned by the VmCgroup; closed by remove().
    const std::vector<int>& procs_fds() const { return m_procs_fds; }
    // The cgroup's folder in each hierarchy.
    const std::vector<std::string>& dirs() const { return m_dirs; }
    const std::string& name() const { return m_name; }

    // Whether the kernel's OOM killer killed a process in this cgroup (v1: memory.oom_control's
    // oom_kill; v2: memory.events' oom_kill). After remove() it answers what remove() read last.
    Result<bool> oom_killed() const;

    // "memory 300 MiB, pids 64, cpu 1" for error messages.
    std::string describe_limits() const;

    // SIGKILLs whatever is left in it (v2 cgroup.kill when the kernel has it, else every pid in
    // cgroup.procs, again until none is left), waits until it is empty (at most ~5 s) and removes it
    // in every hierarchy. Idempotent; the destructor calls it.
    Status remove();

private:
    VmCgroup() = default;
    Status write_limits();

    CgroupVersion m_version = CgroupVersion::V1;
    std::string m_name;
    CgroupLimits m_limits;
    std::vector<std::string> m_dirs;
    std::vector<std::vector<std::string>> m_controllers;  // what each of m_dirs' hierarchies holds
    std::string m_memory_dir;  // the one of m_dirs that holds the memory files
    std::vector<int> m_procs_fds;
    bool m_io_weight_set = false;
    bool m_removed = false;
    bool m_oom_checked = false;
    bool m_oom_killed_at_remove = false;
};

// The reconcile after a kilnd restart: every cgroup directly under kiln's parent, in every hierarchy,
// whose name starts with `prefix` (non-empty; nothing else is touched): its processes are killed,
// then it is removed. Returns how many names were removed (a name counts once however many
// hierarchies held it); when some could not be removed, an error naming them, after trying all.
Result<int> sweep_cgroups(const CgroupHost& host, const std::string& prefix);

}  // namespace kiln::vm::jail
