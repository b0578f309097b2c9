// The exec child: a vfork-style clone that shares the agent's memory until execve, so it makes raw syscalls only.
#include "agent/exec_child.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>

#include "base/errno_error.h"

// The child runs on a stack the sanitizers know nothing about and shares their state with the
// parent: keep their instrumentation (and their interceptors: no libc calls) out of it.
#if defined(__clang__) || defined(__GNUC__)
#define KILN_CHILD_CODE __attribute__((no_sanitize("address", "undefined")))
#else
#define KILN_CHILD_CODE
#endif

namespace kiln::agent {

std::vector<std::string> split_search_path(const std::string& path) {
    std::vector<std::string> dirs;
    size_t pos = 0;
    for (;;) {
        size_t end = path.find(':', pos);
        dirs.push_back(path.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
        if (end == std::string::npos) return dirs;
        pos = end + 1;
    }
}

namespace {

// Stack for the child, inside spawn()'s frame (the parent is suspended while the child uses it):
// the child only makes syscalls, a few hundred bytes deep.
constexpr size_t kChildStackSize = 16 * 1024;

// The kernel's struct sigaction with SIG_DFL, no flags and an empty mask is all zeros, whatever
// the architecture's layout (handler, flags, [restorer,] mask); 4 words cover every layout.
constexpr unsigned long kDefaultAction[4] = {0, 0, 0, 0};
constexpr size_t kKernelSigsetSize = 8;  // _NSIG / 8 on Linux
constexpr uint64_t kEmptyKernelSigset = 0;
constexpr uint64_t kFullKernelSigset = ~uint64_t{0};
constexpr struct sched_param kDefaultSchedParam {};

// Syscalls for the child. glibc's syscall() only moves registers; on failure it returns -1 and
// sets errno, which is the suspended parent thread's (shared TLS), read right after the call.
KILN_CHILD_CODE long sys(long nr, long a = 0, long b = 0, long c = 0, long d = 0) {
    return syscall(nr, a, b, c, d);
}

KILN_CHILD_CODE size_t length(const char* text) {
    size_t n = 0;
    while (text[n]) ++n;
    return n;
}

KILN_CHILD_CODE void write_all(int fd, const char* text) {
    size_t len = length(text);
    while (len > 0) {
        long n = sys(SYS_write, fd, reinterpret_cast<long>(text), static_cast<long>(len));
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            return;
        }
        text += n;
        len -= static_cast<size_t>(n);
    }
}

[[noreturn]] KILN_CHILD_CODE void child_exit(int code) {
    for (;;) sys(SYS_exit_group, code);
}

[[noreturn]] KILN_CHILD_CODE void die(const char* what, const char* subject, int err) {
    write_all(2, "kiln-agent: cannot ");
    write_all(2, what);
    write_all(2, " '");
    write_all(2, subject);
    write_all(2, "': ");
    const char* desc = strerrordesc_np(err);  // a constant table: no locale, no allocation
    write_all(2, desc ? desc : "unknown error");
    write_all(2, "\n");
    child_exit(127);
}

// Moves `fd` onto `target` so that it survives exec.
KILN_CHILD_CODE bool install_fd(int fd, int target) {
    if (fd == target) return sys(SYS_fcntl, fd, F_SETFD, 0) == 0;
    return sys(SYS_dup3, fd, target, 0) == target;
}


// What the child reads: plain values and pointers into the ExecPlan, so that the child's code
// calls nothing of libstdc++ (out-of-line and instrumented in a debug build).
struct ChildArgs {
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    int cgroup_procs_fd;
    int reset_signals[NSIG];
    int reset_count;
    bool reset_scheduler;
    bool set_groups;
    int group_count;
    const gid_t* groups;
    bool set_gid;
    bool set_uid;
    uid_t uid;
    gid_t gid;
    const char* name;
    const char* cwd;
    const char* const* candidates;  // null-terminated
    char* const* argv;
    char* const* envp;
    char** sh_argv;  // [1] is filled in by the child
};

// Runs in the child, on a stack in spawn()'s frame, sharing the agent's memory until execve: raw
// syscalls only, no allocation, no locks. Signals, session, cgroup, stdio, credentials, cwd, exec.
// Never returns; on failure writes "kiln-agent: ..." to the child's stderr and exits 127.
[[noreturn]] KILN_CHILD_CODE void run_child(const ChildArgs& a) {
    // 1. Signals as a fresh process expects them: nothing ignored (PID 1 ignores several), no
    //    handler of the parent's, then nothing blocked (spawn() blocked everything).
    for (int i = 0; i < a.reset_count; ++i)
        sys(SYS_rt_sigaction, a.reset_signals[i], reinterpret_cast<long>(kDefaultAction), 0, kKernelSigsetSize);
    sys(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&kEmptyKernelSigset), 0, kKernelSigsetSize);
    //    The scheduling policy too: the agent's SCHED_BATCH (pid1.h) is not for commands.
    if (a.reset_scheduler) sys(SYS_sched_setscheduler, 0, SCHED_OTHER, reinterpret_cast<long>(&kDefaultSchedParam));

    // 2. Own session and process group, and own cgroup leaf, so the whole tree can be signalled.
    sys(SYS_setsid);
    if (a.cgroup_procs_fd >= 0) sys(SYS_write, a.cgroup_procs_fd, reinterpret_cast<long>("0"), 1);

    // 3. Standard streams; every other descriptor closes on exec.
    if (!install_fd(a.stdin_fd, 0) || !install_fd(a.stdout_fd, 1) || !install_fd(a.stderr_fd, 2)) child_exit(127);
    sys(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);

    // 4. Credentials, then the working directory as that user. Raw syscalls: glibc's wrappers
    //    would try to change the credentials of every thread of the parent.
    if (a.set_groups && sys(SYS_setgroups, a.group_count, reinterpret_cast<long>(a.groups)) != 0)
        die("set the supplementary groups for", a.name, errno);
    if (a.set_gid && sys(SYS_setgid, a.gid) != 0) die("switch group for", a.name, errno);
    if (a.set_uid && sys(SYS_setuid, a.uid) != 0) die("switch user for", a.name, errno);
    if (sys(SYS_chdir, reinterpret_cast<long>(a.cwd)) != 0) die("change directory to", a.cwd, errno);

    // 5. execvp semantics over the request's PATH: skip missing candidates, remember EACCES,
    //    run a script without #! through /bin/sh.
    int err = ENOENT;
    bool saw_eacces = false;
    auto argv = reinterpret_cast<long>(a.argv);
    auto envp = reinterpret_cast<long>(a.envp);
    for (const char* const* candidate = a.candidates; *candidate; ++candidate) {
        sys(SYS_execve, reinterpret_cast<long>(*candidate), argv, envp);
        int e = errno;
        if (e == ENOEXEC) {
            a.sh_argv[1] = const_cast<char*>(*candidate);
            sys(SYS_execve, reinterpret_cast<long>(a.sh_argv[0]), reinterpret_cast<long>(a.sh_argv), envp);
            e = errno;
        }
        if (e == EACCES) {
            saw_eacces = true;
            continue;
        }
        if (e == ENOENT || e == ENOTDIR || e == ESTALE || e == ENODEV || e == ETIMEDOUT) continue;
        err = e;
        break;
    }
    if (saw_eacces && err == ENOENT) err = EACCES;
    die("run", a.name, err);
}

KILN_CHILD_CODE int child_entry(void* args) { run_child(*static_cast<const ChildArgs*>(args)); }

}  // namespace

sigset_t signals_not_at_default() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction current;
        if (sigaction(sig, nullptr, &current) != 0) continue;  // glibc's internal signals: EINVAL
        if (current.sa_handler != SIG_DFL) sigaddset(&set, sig);
    }
    return set;
}

Credentials Credentials::of_this_process() {
    Credentials c;
    getresuid(&c.ruid, &c.euid, &c.suid);
    getresgid(&c.rgid, &c.egid, &c.sgid);
    c.supplementary_groups = getgroups(0, nullptr) != 0;
    return c;
}

ExecPlan::ExecPlan(const proto::ExecRequest& request, const Credentials& agent, std::vector<gid_t> groups) {
    ExecPlan& plan = *this;
    if (!request.argv.empty()) {
        plan.m_argv_storage = request.argv;
    } else {
        plan.m_argv_storage = {"/bin/sh", "-c", request.shell};
    }
    std::map<std::string, std::string> env{{"PATH", kDefaultPath}, {"HOME", "/root"}, {"TERM", "dumb"}};
    for (const auto& [k, v] : request.env) env[k] = v;
    for (const auto& [k, v] : env) plan.m_env_storage.push_back(k + "=" + v);

    const std::string& name = plan.m_argv_storage.front();
    if (name.find('/') != std::string::npos) {
        plan.m_candidates.push_back(name);
    } else if (!name.empty()) {
        for (const std::string& dir : split_search_path(env["PATH"]))
            plan.m_candidates.push_back(dir.empty() ? name : dir + "/" + name);
    }
    plan.m_cwd = request.cwd;
    plan.m_uid = request.uid;
    plan.m_gid = request.gid;
    // Credentials the child would only set to what it already has are left alone: under emulation
    // each change costs (new creds, freed after an RCU grace period).
    // Only the primary group is the same as none.
    if (groups.size() == 1 && groups.front() == request.gid) groups.clear();
    plan.m_groups = std::move(groups);
    plan.m_set_groups = agent.euid == 0 && (agent.supplementary_groups || !plan.m_groups.empty());
    plan.m_set_gid = !(agent.rgid == m_gid && agent.egid == m_gid && agent.sgid == m_gid);
    plan.m_set_uid = !(agent.ruid == m_uid && agent.euid == m_uid && agent.suid == m_uid);
    plan.skip_missing_candidates(agent);
    plan.finalise();
}

void ExecPlan::skip_missing_candidates(const Credentials& agent) {
    // A failed execve is costly under emulation (the kernel sets up a new mm before it looks for
    // the file): drop the absolute candidates before the first one that exists, when stat sees
    // what the child will see (same uid). The ones after it are only reached if its exec fails;
    // with none left the child reports ENOENT, as execvp would.
    if (m_uid != agent.euid) return;
    size_t first_present = 0;
    while (first_present < m_candidates.size()) {
        const std::string& c = m_candidates[first_present];
        struct stat st;
        if (c.front() != '/' || stat(c.c_str(), &st) == 0 || (errno != ENOENT && errno != ENOTDIR)) break;
        ++first_present;
    }
    m_candidates.erase(m_candidates.begin(), m_candidates.begin() + static_cast<std::ptrdiff_t>(first_present));
}

void ExecPlan::finalise() {
    for (auto& a : m_argv_storage) m_argv.push_back(a.data());
    m_argv.push_back(nullptr);
    for (auto& e : m_env_storage) m_envp.push_back(e.data());
    m_envp.push_back(nullptr);
    for (auto& c : m_candidates) m_candidate_ptrs.push_back(c.c_str());
    m_candidate_ptrs.push_back(nullptr);
    static char sh[] = "/bin/sh";
    m_sh_argv.push_back(sh);
    m_sh_argv.push_back(nullptr);  // the candidate, filled in by the child
    for (size_t i = 1; i < m_argv_storage.size(); ++i) m_sh_argv.push_back(m_argv_storage[i].data());
    m_sh_argv.push_back(nullptr);
}

Result<Spawned> ExecPlan::spawn() {
    ChildArgs args{};
    args.stdin_fd = stdin_fd;
    args.stdout_fd = stdout_fd;
    args.stderr_fd = stderr_fd;
    args.cgroup_procs_fd = cgroup_procs_fd;
    for (int sig = 1; sig < NSIG; ++sig)
        if (sigismember(&reset_signals, sig) == 1) args.reset_signals[args.reset_count++] = sig;
    // glibc keeps the kernel's signals 32 and 33 for itself: its sigaction and sigaddset refuse
    // them, so signals_not_at_default() cannot see one ignored by whoever started us (seen: 32
    // ignored in a CI runner's process tree). The child resets them with the raw syscall.
    for (int sig : {32, 33})
        if (sig < NSIG) args.reset_signals[args.reset_count++] = sig;
    args.reset_scheduler = reset_scheduler;
    args.set_groups = m_set_groups;
    args.group_count = static_cast<int>(m_groups.size());
    args.groups = m_groups.data();
    args.set_gid = m_set_gid;
    args.set_uid = m_set_uid;
    args.uid = m_uid;
    args.gid = m_gid;
    args.name = program().c_str();
    args.cwd = m_cwd.c_str();
    args.candidates = m_candidate_ptrs.data();
    args.argv = m_argv.data();
    args.envp = m_envp.data();
    args.sh_argv = m_sh_argv.data();

    // 1. Block everything, glibc's internal signals too (hence the raw syscall): a handler must
    //    not run in the child (on our stack, in our memory) before it has reset the dispositions.
    uint64_t previous = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &kFullKernelSigset, &previous, kKernelSigsetSize);

    // 2. Clone, suspended until the child execs or exits; CLONE_PIDFD saves a pidfd_open.
    alignas(64) char stack[kChildStackSize];
    char* stack_top = stack + sizeof stack;
    int pidfd = -1;
    pid_t pid = clone(child_entry, stack_top, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &args, &pidfd);
    int err = errno;
    if (pid < 0 && err == EINVAL) {  // a kernel older than 5.2: no CLONE_PIDFD
        pidfd = -1;
        pid = clone(child_entry, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
        err = errno;
        if (pid > 0) pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    }
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &previous, nullptr, kKernelSigsetSize);
    if (pid < 0) return errno_error("start a process (clone)", err);
    return Spawned{pid, UniqueFd(pidfd)};
}

}  // namespace kiln::agent
