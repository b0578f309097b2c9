// spawn_jailed: one QEMU started inside its own jail (uid, root, namespaces, cgroup, no
// environment, seccomp), the way Firecracker's jailer starts firecracker. docs/security.md.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "base/child_process.h"
#include "base/result.h"

namespace kiln::vm::jail {

// A host file or directory that appears at the same absolute path inside the jail.
struct JailBind {
    std::string path;
    bool writable = false;  // else read-only (and always nosuid, nodev unless a device node)
};

struct JailSpec {
    uid_t uid = 0;                   // never 0: the QEMU process never holds uid 0
    gid_t gid = 0;
    std::vector<gid_t> groups;       // supplementary groups (the kvm group under KVM), else none
    // Bound at their own paths: the VM's jail dir (writable), the kernel for a boot, the QEMU
    // binary if it lives outside /usr. /usr, /etc/ld.so.cache and /dev/{null,zero,urandom} are
    // always there; /dev/kvm only when listed in `devices`.
    std::vector<JailBind> binds;
    std::vector<std::string> devices;  // extra device nodes, e.g. /dev/kvm
    std::string cwd;                   // inside the jail
    std::vector<std::string> argv;     // argv[0]: an absolute path inside the jail
    std::vector<std::string> env;      // the whole environment ("NAME=value"); empty: none
    std::vector<int> keep_fds;         // inherited under the same numbers (> 2): tap, memfd, lock
    std::vector<int> cgroup_procs_fds; // each hierarchy's cgroup.procs: joined before spawn_jailed returns
    int stdout_fd = -1;                // QEMU's stdout and stderr (its log); -1: /dev/null
    uint64_t max_open_files = 1024;    // RLIMIT_NOFILE
    uint64_t max_processes = 0;        // RLIMIT_NPROC for the jail uid (threads count); 0: unset
    bool die_with_parent = false;      // PR_SET_PDEATHSIG(SIGKILL) after the uid change
    std::string hostname = "kiln-jail";
};

// Where each jailed child mounts its private root before pivot_root (an empty directory that
// exists on the host; the mount lives only in the child's own mount namespace).
std::string jail_mountpoint();

// clone3 into new mount, PID, network, IPC and UTS namespaces (kilnd moves it into its cgroups
// meanwhile, before this returns); the child builds
// a read-only tmpfs root with only the binds, pivots into it, sets rlimits, closes every fd but
// the kept ones, drops every capability and the bounding set, changes to uid/gid, sets
// no_new_privs, loads Kiln's seccomp filter (seccomp_filter.h) and execs argv with `env`. A
// failure in the child comes back as an error naming the step and errno; no process is left.
Result<std::unique_ptr<ChildProcess>> spawn_jailed(const JailSpec& spec);

}  // namespace kiln::vm::jail
