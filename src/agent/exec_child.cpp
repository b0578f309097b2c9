// The exec child between fork() and execve(): async-signal-safe code only, everything allocated beforehand.
#include "agent/exec_child.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

namespace kiln::agent {
namespace {

void write_all(int fd, const char* text) {
    size_t len = std::strlen(text);
    while (len > 0) {
        ssize_t n = ::write(fd, text, len);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            return;
        }
        text += n;
        len -= static_cast<size_t>(n);
    }
}

[[noreturn]] void die(const char* what, const char* subject, int err) {
    write_all(2, "kiln-agent: cannot ");
    write_all(2, what);
    write_all(2, " '");
    write_all(2, subject);
    write_all(2, "': ");
    const char* desc = strerrordesc_np(err);  // async-signal-safe, unlike strerror
    write_all(2, desc ? desc : "unknown error");
    write_all(2, "\n");
    _exit(127);
}

// Moves `fd` onto `target` so that it survives exec.
bool install_fd(int fd, int target) {
    if (fd == target) {
        int flags = fcntl(fd, F_GETFD);
        return flags >= 0 && fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) == 0;
    }
    return dup2(fd, target) == target;
}

}  // namespace

ExecPlan::ExecPlan(const proto::ExecRequest& request) {
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
        const std::string& path = env["PATH"];
        size_t pos = 0;
        for (;;) {
            size_t end = path.find(':', pos);
            std::string dir = path.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
            plan.m_candidates.push_back(dir.empty() ? name : dir + "/" + name);
            if (end == std::string::npos) break;
            pos = end + 1;
        }
    }
    plan.m_cwd = request.cwd;
    plan.m_uid = request.uid;
    plan.m_gid = request.gid;
    plan.m_drop_groups = geteuid() == 0;
    plan.finalise();
}

void ExecPlan::finalise() {
    for (auto& a : m_argv_storage) m_argv.push_back(a.data());
    m_argv.push_back(nullptr);
    for (auto& e : m_env_storage) m_envp.push_back(e.data());
    m_envp.push_back(nullptr);
    static char sh[] = "/bin/sh";
    m_sh_argv.push_back(sh);
    m_sh_argv.push_back(nullptr);  // the candidate, filled in by the child
    for (size_t i = 1; i < m_argv_storage.size(); ++i) m_sh_argv.push_back(m_argv_storage[i].data());
    m_sh_argv.push_back(nullptr);
}

void ExecPlan::run_in_child() {
    // 1. Signals as a fresh process expects them: nothing blocked, nothing ignored (PID 1 ignores several).
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);

    // 2. Own session and process group, and own cgroup leaf, so the whole tree can be signalled.
    setsid();
    if (cgroup_procs_fd >= 0) {
        (void)!::write(cgroup_procs_fd, "0", 1);
        ::close(cgroup_procs_fd);
    }

    // 3. Standard streams; every other descriptor closes on exec.
    if (!install_fd(stdin_fd, 0) || !install_fd(stdout_fd, 1) || !install_fd(stderr_fd, 2))
        _exit(127);
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);

    // 4. Credentials, then the working directory as that user.
    if (m_drop_groups && setgroups(0, nullptr) != 0) die("drop supplementary groups for", program().c_str(), errno);
    if (setgid(m_gid) != 0) die("switch group for", program().c_str(), errno);
    if (setuid(m_uid) != 0) die("switch user for", program().c_str(), errno);
    if (chdir(m_cwd.c_str()) != 0) die("change directory to", m_cwd.c_str(), errno);

    // 5. execvp semantics over the request's PATH: skip missing candidates, remember EACCES,
    //    run a script without #! through /bin/sh.
    int err = ENOENT;
    bool saw_eacces = false;
    for (auto& candidate : m_candidates) {
        execve(candidate.c_str(), m_argv.data(), m_envp.data());
        int e = errno;
        if (e == ENOEXEC) {
            m_sh_argv[1] = candidate.data();
            execve("/bin/sh", m_sh_argv.data(), m_envp.data());
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
    die("run", program().c_str(), err);
}

}  // namespace kiln::agent
