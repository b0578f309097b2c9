// Starting, feeding, draining, signalling and finishing one exec on behalf of the server.
#include "agent/exec_session.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "agent/exec_child.h"
#include "base/errno_error.h"

namespace kiln::agent {
namespace {

// At the end of an exec, at most this much is drained from each pipe (a pipe holds 64 KiB by default).
constexpr size_t kMaxFinalDrain = 1 << 20;

struct Pipe {
    UniqueFd read_end;
    UniqueFd write_end;
};

Result<Pipe> make_pipe() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return errno_error("create a pipe");
    return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Our ends of the pipes only (the child's stay blocking); F_SETFL leaves the access mode alone.
void set_nonblocking(int fd) { fcntl(fd, F_SETFL, O_NONBLOCK); }

bool write_file(const std::string& path, const char* text) {
    UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return false;
    size_t len = std::char_traits<char>::length(text);
    return ::write(fd.get(), text, len) == static_cast<ssize_t>(len);
}

std::vector<pid_t> read_cgroup_pids(const std::string& dir) {
    std::vector<pid_t> pids;
    UniqueFd fd(open((dir + "/cgroup.procs").c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return pids;
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        long pid = std::strtol(text.c_str() + pos, nullptr, 10);
        if (pid > 0) pids.push_back(static_cast<pid_t>(pid));
        pos = end + 1;
    }
    return pids;
}

}  // namespace

Result<std::unique_ptr<ExecSession>> ExecSession::start(const proto::ExecRequest& request,
                                                        std::optional<CgroupLeaf>& cgroup, const ExecDefaults& defaults,
                                                        std::vector<gid_t> groups) {
    std::unique_ptr<ExecSession> session(new ExecSession());
    ExecPlan plan(request, defaults.credentials, std::move(groups));

    Pipe out = TRY(make_pipe());
    Pipe err = TRY(make_pipe());
    UniqueFd own_stdin;
    int child_stdin = defaults.dev_null;
    if (request.stdin) {
        Pipe in = TRY(make_pipe());
        own_stdin = std::move(in.read_end);
        session->m_stdin = std::move(in.write_end);
        session->m_stdin_wanted = true;
        child_stdin = own_stdin.get();
    } else if (child_stdin < 0) {
        own_stdin.reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!own_stdin) return errno_error("open /dev/null");
        child_stdin = own_stdin.get();
    }
    plan.stdin_fd = child_stdin;
    plan.stdout_fd = out.write_end.get();
    plan.stderr_fd = err.write_end.get();
    plan.cgroup_procs_fd = cgroup ? cgroup->procs.get() : -1;
    plan.reset_signals = defaults.reset_signals;
    plan.reset_scheduler = defaults.reset_scheduler;

    session->m_started = Clock::now();
    Spawned child = TRY(plan.spawn());
    session->m_cgroup = std::exchange(cgroup, std::nullopt);
    session->m_pid = child.pid;
    session->m_pidfd = std::move(child.pidfd);
    session->m_stdout = std::move(out.read_end);
    session->m_stderr = std::move(err.read_end);
    set_nonblocking(session->m_stdout.get());
    set_nonblocking(session->m_stderr.get());
    if (session->m_stdin) set_nonblocking(session->m_stdin.get());
    session->m_output_limit = request.output_limit;
    if (request.timeout_ms > 0) session->m_deadline = session->m_started + std::chrono::milliseconds(request.timeout_ms);
    return session;
}

ExecSession::~ExecSession() {
    if (!m_exited && m_pid > 0) kill_tree();
}

void ExecSession::forward(proto::FrameType type, FrameOutbox& out, std::span<const uint32_t> streams, const char* data,
                          size_t size) {
    // Output nobody is attached to (a detached kept exec) is dropped and not counted.
    if (streams.empty()) return;
    uint64_t room = m_output_bytes < m_output_limit ? m_output_limit - m_output_bytes : 0;
    size_t send = static_cast<size_t>(std::min<uint64_t>(room, size));
    if (send > 0) {
        for (uint32_t stream : streams) out.push(type, stream, std::string_view(data, send));
        m_output_bytes += send;
    }
    if (send < size) m_truncated = true;
}

void ExecSession::read_output(int fd, FrameOutbox& out, std::span<const uint32_t> streams, char* scratch,
                              size_t scratch_size) {
    UniqueFd& pipe = fd == m_stdout.get() ? m_stdout : m_stderr;
    if (!pipe || pipe.get() != fd) return;
    auto type = &pipe == &m_stdout ? proto::FrameType::Stdout : proto::FrameType::Stderr;
    ssize_t n = ::read(fd, scratch, scratch_size);
    if (n > 0) {
        forward(type, out, streams, scratch, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        pipe.reset();  // EOF: every writer has closed it
    }
}

void ExecSession::add_stdin(std::string_view data) {
    if (!m_stdin_wanted || m_stdin_closing || !m_stdin) return;  // stdin was not asked for, or is closed
    m_stdin_backlog.append(data);
    write_stdin();
}

void ExecSession::close_stdin_after_backlog() {
    m_stdin_closing = true;
    if (m_stdin_backlog.empty()) m_stdin.reset();
}

void ExecSession::write_stdin() {
    while (m_stdin && !m_stdin_backlog.empty()) {
        ssize_t n = ::write(m_stdin.get(), m_stdin_backlog.data(), m_stdin_backlog.size());
        if (n > 0) {
            m_stdin_backlog.erase(0, static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        // EPIPE: the child closed its stdin; what the host still sends is dropped.
        m_stdin_backlog.clear();
        m_stdin_backlog.shrink_to_fit();
        m_stdin.reset();
        return;
    }
    if (m_stdin_backlog.empty()) {
        m_stdin_backlog.shrink_to_fit();
        if (m_stdin_closing) m_stdin.reset();
    }
}

void ExecSession::signal_tree(int sig) {
    if (m_cgroup) {
        auto pids = read_cgroup_pids(m_cgroup->dir);
        for (pid_t p : pids) kill(p, sig);
        if (!pids.empty() || m_exited) return;  // else the child could not join: its process group
    }
    if (kill(-m_pid, sig) != 0 && !m_exited) kill(m_pid, sig);
}

void ExecSession::kill_tree() {
    // cgroup.kill reaches descendants that left the process group (setsid, daemons).
    if (m_cgroup && !write_file(m_cgroup->dir + "/cgroup.kill", "1")) signal_tree(SIGKILL);
    kill(-m_pid, SIGKILL);
    if (!m_exited) kill(m_pid, SIGKILL);
}

void ExecSession::expire() {
    m_deadline.reset();
    if (m_exited) return;
    m_timed_out = true;
    kill_tree();
}

void ExecSession::try_reap() {
    if (m_exited) return;
    int status = 0;
    pid_t r = waitpid(m_pid, &status, WNOHANG);
    if (r == m_pid) {
        set_exited(status);
    } else if (r < 0 && errno == ECHILD) {
        set_exited(-1);  // reaped elsewhere without us hearing of it; the status is lost
    }
}

void ExecSession::set_exited(int wait_status) {
    if (m_exited) return;
    m_exited = true;
    m_wait_status = wait_status;
    m_ended = Clock::now();
    m_pidfd.reset();
}

proto::ExecResult ExecSession::finish(FrameOutbox& out, std::span<const uint32_t> streams, char* scratch,
                                     size_t scratch_size) {
    for (UniqueFd* pipe : {&m_stdout, &m_stderr}) {
        if (!*pipe) continue;
        auto type = pipe == &m_stdout ? proto::FrameType::Stdout : proto::FrameType::Stderr;
        int available = 0;
        if (ioctl(pipe->get(), FIONREAD, &available) != 0) available = 0;
        size_t left = std::min<size_t>(static_cast<size_t>(std::max(available, 0)), kMaxFinalDrain);
        while (left > 0) {
            ssize_t n = ::read(pipe->get(), scratch, std::min(left, scratch_size));
            if (n <= 0) break;
            forward(type, out, streams, scratch, static_cast<size_t>(n));
            left -= static_cast<size_t>(n);
        }
        pipe->reset();
    }
    m_stdin.reset();
    m_stdin_backlog.clear();

    proto::ExecResult result;
    if (m_wait_status != -1 && WIFEXITED(m_wait_status)) {
        result.exit_code = WEXITSTATUS(m_wait_status);
    } else if (m_wait_status != -1 && WIFSIGNALED(m_wait_status)) {
        result.signal = WTERMSIG(m_wait_status);
    }
    result.timed_out = m_timed_out;
    result.output_truncated = m_truncated;
    result.duration_ms = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(m_ended - m_started).count());
    return result;
}

}  // namespace kiln::agent
