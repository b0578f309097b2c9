// fork/exec with an error pipe, PR_SET_PDEATHSIG and fd hygiene; pidfd-based waiting and signalling.
#include "base/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/errno_error.h"

extern char** environ;

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace kiln {
namespace {

int sys_pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int sys_pidfd_send_signal(int pidfd, int sig) {
    return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string path_variable(const std::vector<std::string>& env) {
    for (const auto& entry : env)
        if (entry.rfind("PATH=", 0) == 0) return entry.substr(5);
    return kDefaultPath;
}


ExitStatus decode_wait_status(int status) {
    ExitStatus s;
    if (WIFEXITED(status)) s.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) s.signal = WTERMSIG(status);
    return s;
}

// What the child reports through the error pipe when it cannot exec.
struct ChildFailure {
    int stage;  // 0: dup2, 1: chdir, 2: exec, 3: setup, 4: mount namespace, 5: change user
    int err;
};

[[noreturn]] void child_fail(int pipe_fd, int stage) {
    ChildFailure f{stage, errno};
    ssize_t ignored = ::write(pipe_fd, &f, sizeof f);
    (void)ignored;
    ::_exit(127);
}

// Runs in the child between fork and exec: only async-signal-safe calls from here on.
[[noreturn]] void child_main(const SpawnOptions& options, const char* program, char* const* argv, char* const* envp,
                             int dev_null, int pipe_fd, pid_t parent) {
    if (const auto& as = options.run_as) {
        if (!as->bind_source.empty()) {
            if (::unshare(CLONE_NEWNS) != 0) child_fail(pipe_fd, 4);
            // Private first, so that the bind never propagates back to the host's namespace.
            if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) child_fail(pipe_fd, 4);
            if (::mount(as->bind_source.c_str(), as->bind_target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
                child_fail(pipe_fd, 4);
        }
        // Raw syscalls: glibc's wrappers signal every thread, and after fork only this one exists.
        if (::syscall(SYS_setgroups, 0, nullptr) != 0) child_fail(pipe_fd, 5);
        if (::syscall(SYS_setresgid, as->gid, as->gid, as->gid) != 0) child_fail(pipe_fd, 5);
        if (::syscall(SYS_setresuid, as->uid, as->uid, as->uid) != 0) child_fail(pipe_fd, 5);
    }
    // After the user change, which clears the parent-death signal.
    if (options.die_with_parent) {
        if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(pipe_fd, 3);
        if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
    }
    if (options.new_session) ::setsid();
    reset_signals_in_child();

    // Move every source fd above 2 first, so that dup2 into 0/1/2 cannot clobber a later source.
    int sources[3] = {options.stdin_fd, options.stdout_fd, options.stderr_fd};
    int moved[3];
    for (int i = 0; i < 3; ++i) {
        int src = sources[i] == SpawnOptions::kDevNull ? dev_null : sources[i];
        if (src == SpawnOptions::kInherit) {
            moved[i] = -1;
            continue;
        }
        moved[i] = ::fcntl(src, F_DUPFD_CLOEXEC, 3);
        if (moved[i] < 0) child_fail(pipe_fd, 0);
    }
    for (int i = 0; i < 3; ++i) {
        if (moved[i] >= 0) {
            if (::dup2(moved[i], i) < 0) child_fail(pipe_fd, 0);
        } else {
            ::fcntl(i, F_SETFD, 0);  // an inherited 0/1/2 must survive exec
        }
    }
    // Every other fd, including the error pipe, goes away at exec.
    if (::syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 3; fd < 65536; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    for (int fd : options.keep_fds)
        if (fd != pipe_fd && ::fcntl(fd, F_SETFD, 0) != 0) child_fail(pipe_fd, 3);
    if (!options.cwd.empty()) {
        if (::chdir(options.cwd.c_str()) != 0) child_fail(pipe_fd, 1);
    } else if (const auto& as = options.run_as) {
        // The parent's directory is no place for another user: it may be unreadable to it, or
        // hidden under the bind (kilnd started from a folder in /tmp: git then fails to stat its
        // own working directory). Its own bound folder, else the root.
        const char* dir = as->bind_target.empty() ? "/" : as->bind_target.c_str();
        if (::chdir(dir) != 0) child_fail(pipe_fd, 1);
    }
    ::execve(program, argv, envp);  // only `envp`: nothing of ours is inherited
    child_fail(pipe_fd, 2);
}

}  // namespace

// execvp's search, done in the parent against the *child's* PATH: execvp and execvpe would search
// ours, and a child given its own environment must find what that environment names. Empty PATH
// entries (the current directory, to POSIX) are skipped: kilnd never runs what a cwd holds.
Result<std::string> find_program(const std::string& name, const std::vector<std::string>& env) {
    if (name.find('/') != std::string::npos) return name;
    const std::string path = path_variable(env);
    bool found_unrunnable = false;
    for (size_t start = 0; start <= path.size();) {
        size_t colon = path.find(':', start);
        if (colon == std::string::npos) colon = path.size();
        std::string dir = path.substr(start, colon - start);
        start = colon + 1;
        if (dir.empty()) continue;
        std::string candidate = dir + "/" + name;
        struct stat st;
        if (::stat(candidate.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        found_unrunnable = true;
    }
    if (found_unrunnable) return errno_error("spawn " + name + ": cannot exec (PATH=" + path + ")", EACCES);
    Error e = errno_error("spawn " + name + ": cannot exec: not found in PATH=" + path, ENOENT);
    e.code = ErrorCode::NotFound;
    return e;
}

bool child_failed_before_exec(int err_read, pid_t pid, void* report, size_t size) {
    ssize_t n;
    do {
        n = ::read(err_read, report, size);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return true;
}

void reset_signals_in_child() {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
}

std::vector<std::string> minimal_environment() { return {std::string("PATH=") + kDefaultPath, "LANG=C.UTF-8"}; }

std::vector<std::string> inherited_environment() {
    std::vector<std::string> out;
    for (char** e = environ; e && *e; ++e) out.emplace_back(*e);
    return out;
}

std::string ExitStatus::describe() const {
    if (signal) return "was killed by signal " + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
    return "exited with status " + std::to_string(exit_code);
}

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(const SpawnOptions& options) {
    if (options.argv.empty() || options.argv[0].empty())
        return make_error(ErrorCode::InvalidArgument, "spawn: empty argv");
    const std::string& name = options.argv[0];
    for (int fd : options.keep_fds)
        if (fd <= 2 || ::fcntl(fd, F_GETFD) < 0)
            return make_error(ErrorCode::InvalidArgument, "spawn: fd " + std::to_string(fd) + " to keep is not an open fd above 2");

    // Everything the child needs is prepared here: after fork it may not allocate.
    std::vector<char*> argv;
    argv.reserve(options.argv.size() + 1);
    for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    envp.reserve(options.env.size() + 1);
    for (const auto& e : options.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    const std::string program = TRY(find_program(name, options.env));

    UniqueFd dev_null;
    if (options.stdin_fd == SpawnOptions::kDevNull || options.stdout_fd == SpawnOptions::kDevNull ||
        options.stderr_fd == SpawnOptions::kDevNull) {
        dev_null.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
        if (!dev_null) return errno_error("open /dev/null");
    }
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return errno_error("pipe2");
    UniqueFd err_read(pipe_fds[0]), err_write(pipe_fds[1]);

    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) return errno_error("fork for " + name);
    if (pid == 0) child_main(options, program.c_str(), argv.data(), envp.data(), dev_null.get(), err_write.get(), parent);

    err_write.reset();
    ChildFailure failure{};
    if (child_failed_before_exec(err_read.get(), pid, &failure, sizeof failure)) {
        static const char* stages[] = {"set up its stdio", "chdir", "exec", "set up", "set up its mount namespace",
                                       "change to its user"};
        std::string what = failure.stage == 1 ? "chdir to " + (options.cwd.empty() ? std::string("its own folder") : options.cwd) : stages[std::clamp(failure.stage, 0, 5)];
        int code_err = failure.err;
        Error e = errno_error("spawn " + name + ": cannot " + what, code_err);
        if (failure.stage == 2 && code_err == ENOENT) e.code = ErrorCode::NotFound;
        return e;
    }

    UniqueFd pidfd(sys_pidfd_open(pid));
    if (!pidfd) {
        Error e = errno_error("pidfd_open");
        ::kill(pid, SIGKILL);
        int status;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        return e;
    }
    return std::unique_ptr<ChildProcess>(new ChildProcess(pid, std::move(pidfd), name));
}

ChildProcess::~ChildProcess() {
    if (!exit_status()) kill_and_reap();
}

Status ChildProcess::kill(int sig) {
    std::lock_guard lock(m_mutex);
    if (m_status) return ok_status();
    if (sys_pidfd_send_signal(m_pidfd.get(), sig) != 0 && errno != ESRCH)
        return errno_error("signal " + std::to_string(sig) + " to " + m_name);
    return ok_status();
}

std::optional<ExitStatus> ChildProcess::try_reap_locked() {
    if (m_status) return m_status;
    int status;
    pid_t r;
    do {
        r = ::waitpid(m_pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == m_pid) m_status = decode_wait_status(status);
    else if (r < 0 && errno == ECHILD) m_status = ExitStatus{};  // reaped elsewhere; status unknown
    return m_status;
}

std::optional<ExitStatus> ChildProcess::wait_for(Millis timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        {
            std::lock_guard lock(m_mutex);
            if (auto s = try_reap_locked()) return s;
        }
        int left = remaining_ms(deadline);
        if (left == 0) return std::nullopt;
        struct pollfd p{m_pidfd.get(), POLLIN, 0};
        int r = ::poll(&p, 1, left);
        if (r < 0 && errno != EINTR) return std::nullopt;
    }
}

std::optional<ExitStatus> ChildProcess::exit_status() const {
    std::lock_guard lock(m_mutex);
    return m_status;
}

ExitStatus ChildProcess::kill_and_reap() {
    (void)kill(SIGKILL);
    for (;;) {
        if (auto s = wait_for(Millis(1000))) return *s;
        (void)kill(SIGKILL);
    }
}

Result<CapturedRun> run_and_capture(const std::vector<std::string>& argv, Millis timeout, size_t max_output,
                                    const std::vector<std::string>& env) {
    SpawnOptions options;
    options.argv = argv;
    options.env = env;
    return run_and_capture(options, timeout, max_output);
}

Result<CapturedRun> run_and_capture(const SpawnOptions& spawn, Millis timeout, size_t max_output,
                                    const std::function<Status()>& watch) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return errno_error("pipe2");
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    SpawnOptions options = spawn;
    options.stdin_fd = SpawnOptions::kDevNull;
    options.stdout_fd = write_end.get();
    options.stderr_fd = write_end.get();
    const std::string name = options.argv.empty() ? std::string() : options.argv[0];
    auto child = TRY(ChildProcess::spawn(options));
    write_end.reset();

    CapturedRun run;
    auto deadline = Clock::now() + timeout;
    constexpr int kWatchEveryMs = 200;
    char buf[16 * 1024];
    for (;;) {
        int left = remaining_ms(deadline);
        if (left == 0) {
            child->kill_and_reap();
            return make_error(ErrorCode::Timeout, name + " did not finish within " + std::to_string(timeout.count()) + " ms");
        }
        if (watch) {
            if (auto st = watch(); !st.ok()) {
                child->kill_and_reap();
                return st.error();
            }
        }
        struct pollfd p{read_end.get(), POLLIN, 0};
        int r = ::poll(&p, 1, watch ? std::min(left, kWatchEveryMs) : left);
        if (r < 0 && errno != EINTR) return errno_error("poll");
        if (r <= 0) continue;
        ssize_t n = ::read(read_end.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("read output of " + name);
        }
        if (n == 0) break;
        size_t room = max_output - std::min(max_output, run.output.size());
        run.output.append(buf, std::min(room, static_cast<size_t>(n)));
    }
    auto status = child->wait_for(Millis(remaining_ms(deadline)));
    if (!status) {
        child->kill_and_reap();
        return make_error(ErrorCode::Timeout, name + " did not exit within " + std::to_string(timeout.count()) + " ms");
    }
    run.status = *status;
    if (watch) TRY(watch());  // the last word on what the finished child left
    return run;
}

}  // namespace kiln
