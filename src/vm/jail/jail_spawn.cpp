// spawn_jailed: clone3 into fresh namespaces, a tmpfs root of read-only binds, and exec as an
// unprivileged uid with no capabilities under seccomp. See jail_spawn.h and docs/security.md.
#include "vm/jail/jail_spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "base/errno_error.h"
#include "base/file_util.h"
#include "vm/jail/seccomp_filter.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace kiln::vm::jail {
namespace {

// Each step the child takes, named for the error the parent reports.
enum Step : int {
    kPrivateMounts,
    kMountRoot,
    kMakeDir,
    kMakeFile,
    kMakeLink,
    kBind,
    kRemountBind,
    kMountProc,
    kSealRoot,
    kPivotRoot,
    kHostname,
    kRlimit,
    kStdio,
    kKeepFds,
    kDropBounding,
    kSetGroups,
    kSetGid,
    kSetUid,
    kDropCaps,
    kNoNewPrivs,
    kDeathSignal,
    kSeccomp,
    kChdir,
    kExec,
    kStepCount
};

const char* step_name(int step) {
    static const char* names[kStepCount] = {
        "make the host's mounts private to it", "mount its root tmpfs", "make a directory",
        "make a bind target", "make a link", "bind a path", "make a bind read-only", "mount /proc",
        "make its root read-only", "pivot_root", "set its hostname", "set its rlimits", "set up its stdio",
        "keep its fds", "drop the capability bounding set", "drop supplementary groups", "set its gid",
        "set its uid", "drop its capabilities", "set no_new_privs", "set its parent-death signal",
        "load the seccomp filter", "chdir", "exec"};
    return step >= 0 && step < kStepCount ? names[step] : "?";
}

struct ChildFailure {
    int step;
    int err;
    int index;  // which bind or dir, for the message
};

// One action on the new root, all strings prepared by the parent.
struct MountOp {
    enum Kind { MakeDir, MakeFile, MakeLink, Bind, Proc } kind;
    std::string target;   // under the mountpoint
    std::string source;   // Bind: the host path; MakeLink: the link's text
    bool writable = false;
    bool device = false;  // a device node: not nodev
};

// Everything the child reads, built before clone3: after it, the child may not allocate.
struct ChildPlan {
    std::string root;
    std::vector<MountOp> ops;
    std::vector<std::string> op_labels;  // host path per op, for errors
    std::vector<char*> argv;
    std::vector<std::string> env_storage;
    std::vector<char*> envp;
    const JailSpec* spec = nullptr;
    const SeccompProgram* seccomp = nullptr;
    int dev_null = -1;
    int cap_last = 40;
};

[[noreturn]] void fail(int pipe_fd, int step, int index = -1) {
    ChildFailure f{step, errno, index};
    ssize_t ignored = ::write(pipe_fd, &f, sizeof f);
    (void)ignored;
    ::_exit(127);
}

void run_mount_ops(const ChildPlan& plan, int pipe_fd) {
    for (size_t i = 0; i < plan.ops.size(); ++i) {
        const MountOp& op = plan.ops[i];
        const char* target = op.target.c_str();
        switch (op.kind) {
        case MountOp::MakeDir:
            if (::mkdir(target, 0755) != 0 && errno != EEXIST) fail(pipe_fd, kMakeDir, int(i));
            break;
        case MountOp::MakeFile: {
            int fd = ::open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd < 0) fail(pipe_fd, kMakeFile, int(i));
            ::close(fd);
            break;
        }
        case MountOp::MakeLink:
            if (::symlink(op.source.c_str(), target) != 0) fail(pipe_fd, kMakeLink, int(i));
            break;
        case MountOp::Bind: {
            if (::mount(op.source.c_str(), target, nullptr, MS_BIND | MS_REC, nullptr) != 0) fail(pipe_fd, kBind, int(i));
            unsigned long flags = MS_REMOUNT | MS_BIND | MS_NOSUID;
            if (!op.device) flags |= MS_NODEV;
            if (!op.writable) flags |= MS_RDONLY;
            if (op.writable && !op.device) flags |= MS_NOEXEC;
            if (::mount(nullptr, target, nullptr, flags, nullptr) != 0) fail(pipe_fd, kRemountBind, int(i));
            break;
        }
        case MountOp::Proc:
            if (::mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
                fail(pipe_fd, kMountProc, int(i));
            break;
        }
    }
}

void drop_privileges(const ChildPlan& plan, int pipe_fd) {
    const JailSpec& spec = *plan.spec;
    for (int cap = 0; cap <= plan.cap_last; ++cap)
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) fail(pipe_fd, kDropBounding);
    (void)::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (::syscall(SYS_setgroups, spec.groups.size(), spec.groups.data()) != 0) fail(pipe_fd, kSetGroups);
    if (::syscall(SYS_setresgid, spec.gid, spec.gid, spec.gid) != 0) fail(pipe_fd, kSetGid);
    // From uid 0 to a non-zero uid, the kernel clears the permitted and effective sets.
    if (::syscall(SYS_setresuid, spec.uid, spec.uid, spec.uid) != 0) fail(pipe_fd, kSetUid);
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capset, &header, data) != 0) fail(pipe_fd, kDropCaps);  // the inheritable set too
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(pipe_fd, kNoNewPrivs);
    // After the uid change, which clears a parent-death signal set earlier.
    if (spec.die_with_parent && ::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(pipe_fd, kDeathSignal);
}

[[noreturn]] void child_main(const ChildPlan& plan, int pipe_fd) {
    const JailSpec& spec = *plan.spec;
    reset_signals_in_child();
    ::setsid();

    // 1. A root of its own: nothing mounted here reaches the host's namespace.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail(pipe_fd, kPrivateMounts);
    if (::mount("tmpfs", plan.root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m,nr_inodes=512") != 0)
        fail(pipe_fd, kMountRoot);
    // The root's folders and files get the modes asked for (0755, 0644) whatever kilnd's umask
    // (0077 under packaging/kilnd.service): the VM's uid must traverse them to its jail dir.
    mode_t kilnds_umask = ::umask(022);
    run_mount_ops(plan, pipe_fd);
    ::umask(kilnds_umask);
    if (::mount(nullptr, plan.root.c_str(), nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
        fail(pipe_fd, kSealRoot);
    // pivot_root(".", "."): the old root ends up stacked on the new one and is detached at once.
    if (::chdir(plan.root.c_str()) != 0) fail(pipe_fd, kPivotRoot);
    if (::syscall(SYS_pivot_root, ".", ".") != 0) fail(pipe_fd, kPivotRoot);
    if (::umount2(".", MNT_DETACH) != 0) fail(pipe_fd, kPivotRoot);
    if (::chdir("/") != 0) fail(pipe_fd, kPivotRoot);
    if (::sethostname(spec.hostname.data(), spec.hostname.size()) != 0) fail(pipe_fd, kHostname);

    // 2. Descriptors, then limits: 0 is /dev/null, 1 and 2 the log, the kept fds, nothing else.
    // The descriptors first: until the exec the child holds a copy of kilnd's table, which with
    // ~100 VMs has more entries than max_open_files, so under the lowered limit there would be no
    // free slot to move stdio through (EMFILE). Descriptors above the limit stay valid across it.
    int out = spec.stdout_fd >= 0 ? spec.stdout_fd : plan.dev_null;
    int moved_out = ::fcntl(out, F_DUPFD_CLOEXEC, 3);
    int moved_null = ::fcntl(plan.dev_null, F_DUPFD_CLOEXEC, 3);
    if (moved_out < 0 || moved_null < 0 || ::dup2(moved_null, 0) < 0 || ::dup2(moved_out, 1) < 0 || ::dup2(moved_out, 2) < 0)
        fail(pipe_fd, kStdio);
    if (::syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0) fail(pipe_fd, kKeepFds);
    for (int fd : spec.keep_fds)
        if (::fcntl(fd, F_SETFD, 0) != 0) fail(pipe_fd, kKeepFds);
    rlimit no_core{0, 0};
    rlimit files{spec.max_open_files, spec.max_open_files};
    if (::setrlimit(RLIMIT_CORE, &no_core) != 0 || ::setrlimit(RLIMIT_NOFILE, &files) != 0) fail(pipe_fd, kRlimit);
    if (spec.max_processes) {
        rlimit procs{spec.max_processes, spec.max_processes};
        if (::setrlimit(RLIMIT_NPROC, &procs) != 0) fail(pipe_fd, kRlimit);
    }

    // 3. No uid 0, no capability, no way back.
    drop_privileges(plan, pipe_fd);
    sock_fprog program = plan.seccomp->fprog();
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0) != 0) fail(pipe_fd, kSeccomp);
    if (!spec.cwd.empty() && ::chdir(spec.cwd.c_str()) != 0) fail(pipe_fd, kChdir);
    ::execve(plan.argv[0], plan.argv.data(), plan.envp.data());
    fail(pipe_fd, kExec);
}

// Adds MakeDir ops for every directory above `path` (absolute, inside the jail) not made yet.
void add_parent_dirs(ChildPlan& plan, std::set<std::string>& made, const std::string& path) {
    for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
        std::string dir = path.substr(0, slash);
        if (made.insert(dir).second) {
            plan.ops.push_back({MountOp::MakeDir, plan.root + dir, "", false, false});
            plan.op_labels.push_back(dir);
        }
    }
}

Status add_bind(ChildPlan& plan, std::set<std::string>& made, const std::string& path, bool writable, bool device) {
    if (path.empty() || path[0] != '/' || path.find("/../") != std::string::npos || path.find("/./") != std::string::npos)
        return make_error(ErrorCode::InvalidArgument, "jail: '" + path + "' is not a plain absolute path");
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errno_error("jail: " + path);
    add_parent_dirs(plan, made, path);
    if (made.insert(path).second) {
        plan.ops.push_back({S_ISDIR(st.st_mode) ? MountOp::MakeDir : MountOp::MakeFile, plan.root + path, "", false, false});
        plan.op_labels.push_back(path);
    }
    plan.ops.push_back({MountOp::Bind, plan.root + path, path, writable, device});
    plan.op_labels.push_back(path);
    return ok_status();
}

// /usr and what Debian's merged /usr links from /, the loader's cache, the device nodes QEMU opens,
// a fresh /proc (QEMU reads /proc/self/fd/N for a sealed memory file), then the spec's binds.
Result<ChildPlan> make_plan(const JailSpec& spec, const std::string& root) {
    ChildPlan plan;
    plan.root = root;
    plan.spec = &spec;
    std::set<std::string> made;
    TRY(add_bind(plan, made, "/usr", false, false));
    for (const char* top : {"/lib", "/lib64", "/bin", "/sbin"}) {
        char target[256];
        ssize_t n = ::readlink(top, target, sizeof target - 1);
        if (n > 0) {
            plan.ops.push_back({MountOp::MakeLink, root + top, std::string(target, n), false, false});
            plan.op_labels.push_back(top);
        } else if (path_exists(top)) {
            TRY(add_bind(plan, made, top, false, false));  // a /usr that is not merged
        }
    }
    if (path_exists("/etc/ld.so.cache")) TRY(add_bind(plan, made, "/etc/ld.so.cache", false, false));
    for (const char* dev : {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"}) TRY(add_bind(plan, made, dev, true, true));
    for (const auto& dev : spec.devices) TRY(add_bind(plan, made, dev, true, true));
    add_parent_dirs(plan, made, "/proc/");
    plan.ops.push_back({MountOp::Proc, root + "/proc", "", false, false});
    plan.op_labels.push_back("/proc");
    for (const auto& bind : spec.binds) {
        if (bind.path == "/usr" || bind.path.rfind("/usr/", 0) == 0) continue;  // already there
        TRY(add_bind(plan, made, bind.path, bind.writable, false));
    }
    for (const auto& a : spec.argv) plan.argv.push_back(const_cast<char*>(a.c_str()));
    plan.argv.push_back(nullptr);
    plan.env_storage = spec.env;
    for (auto& e : plan.env_storage) plan.envp.push_back(e.data());
    plan.envp.push_back(nullptr);
    if (auto last = read_file("/proc/sys/kernel/cap_last_cap", 64); last.ok()) plan.cap_last = std::atoi(last->c_str());
    return plan;
}

// Writes `pid` into each cgroup.procs fd (every hierarchy of its cgroup).
Status join_cgroups(const std::vector<int>& procs_fds, pid_t pid) {
    std::string text = std::to_string(pid);
    for (int fd : procs_fds)
        if (::write(fd, text.data(), text.size()) != ssize_t(text.size())) return errno_error("jail: join the VM's cgroup");
    return ok_status();
}

}  // namespace

std::string jail_mountpoint() { return "/run/kiln/jail-root"; }

Result<std::unique_ptr<ChildProcess>> spawn_jailed(const JailSpec& spec) {
    if (spec.uid == 0 || spec.gid == 0) return make_error(ErrorCode::InvalidArgument, "jail: uid and gid must not be 0");
    if (spec.argv.empty() || spec.argv[0].empty() || spec.argv[0][0] != '/')
        return make_error(ErrorCode::InvalidArgument, "jail: argv[0] must be an absolute path");
    for (int fd : spec.keep_fds)
        if (fd <= 2 || ::fcntl(fd, F_GETFD) < 0)
            return make_error(ErrorCode::InvalidArgument, "jail: fd " + std::to_string(fd) + " to keep is not an open fd above 2");
    const std::string root = jail_mountpoint();
    TRY(make_dirs(root, 0700));
    ChildPlan plan = TRY(make_plan(spec, root));
    plan.seccomp = TRY(kiln_seccomp_program());
    UniqueFd dev_null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!dev_null) return errno_error("open /dev/null");
    plan.dev_null = dev_null.get();
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return errno_error("pipe2");
    UniqueFd err_read(pipe_fds[0]), err_write(pipe_fds[1]);

    int pidfd = -1;
    clone_args args{};
    args.flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_PIDFD;
    args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    args.exit_signal = SIGCHLD;
    long pid = ::syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0) return errno_error("jail: clone3 with new namespaces");
    if (pid == 0) child_main(plan, err_write.get());

    UniqueFd owned_pidfd(pidfd);
    err_write.reset();
    // Its cgroups, joined from here while the child sets up its root and QEMU starts: moving a
    // process into a v1 cgroup waits for an RCU grace period (~6-13 ms measured here), which the
    // child's own write added to every start. Done before this returns, so before any guest code
    // runs (its vCPUs start only at QMP cont or an incoming load); QEMU's first allocations stay
    // charged where kilnd's are (v1 moves no charges).
    Status joined = join_cgroups(spec.cgroup_procs_fds, pid_t(pid));
    ChildFailure failure{};
    if (child_failed_before_exec(err_read.get(), pid_t(pid), &failure, sizeof failure)) {
        std::string what = std::string("jail: the child could not ") + step_name(failure.step);
        if (failure.index >= 0 && size_t(failure.index) < plan.op_labels.size()) what += " (" + plan.op_labels[failure.index] + ")";
        if (failure.step == kExec) what += " " + spec.argv[0];
        return errno_error(what, failure.err);
    }
    if (!joined.ok()) {
        ::syscall(SYS_pidfd_send_signal, owned_pidfd.get(), SIGKILL, nullptr, 0);
        int status;
        while (::waitpid(pid_t(pid), &status, 0) < 0 && errno == EINTR) {
        }
        return joined.error();
    }
    return ChildProcess::adopt(pid_t(pid), std::move(owned_pidfd), spec.argv[0]);
}

}  // namespace kiln::vm::jail
