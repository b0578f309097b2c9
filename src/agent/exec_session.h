// ExecSession: one running exec: its process tree, pipes, stdin backlog, timeout and output accounting.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/cgroup_leaves.h"
#include "agent/exec_child.h"
#include "agent/frame_outbox.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "proto/messages.h"

namespace kiln::agent {

using Clock = std::chrono::steady_clock;

// What every exec starts from besides its request, prepared once by the server.
struct ExecDefaults {
    sigset_t reset_signals{};  // signals_not_at_default() when the server was created
    bool reset_scheduler = false;  // the server's thread is not SCHED_OTHER: children go back to it
    Credentials credentials;   // the agent's, when the server was created
    int dev_null = -1;         // stdin of an exec without "stdin" (-1: opened per exec)
};

class ExecSession {
public:
    // Spawns the request (vfork-style, see ExecPlan::spawn). `cgroup`, when set, is an empty cgroup
    // v2 leaf the child joins before exec: on success the session holds it until take_cgroup(); on
    // failure it stays with the caller.
    // `groups`: the supplementary groups of the request's user, if it named one.
    static Result<std::unique_ptr<ExecSession>> start(const proto::ExecRequest& request,
                                                      std::optional<CgroupLeaf>& cgroup, const ExecDefaults& defaults,
                                                      std::vector<gid_t> groups = {});
    ExecSession(const ExecSession&) = delete;
    ExecSession& operator=(const ExecSession&) = delete;
    // An abandoned session (still running) has its whole tree killed.
    ~ExecSession();

    pid_t pid() const { return m_pid; }
    int pidfd() const { return m_pidfd.get(); }  // -1 when the kernel has no pidfd_open
    UniqueFd release_pidfd() { return std::move(m_pidfd); }
    // The leaf, for the server to reuse or remove once the exec has ended or been abandoned.
    std::optional<CgroupLeaf> take_cgroup() { return std::exchange(m_cgroup, std::nullopt); }

    // Output pipes, -1 once closed.
    int stdout_fd() const { return m_stdout.get(); }
    int stderr_fd() const { return m_stderr.get(); }
    // Reads one chunk (<= scratch_size) from the pipe `fd` and forwards it as a Stdout/Stderr frame
    // to each of `streams` (a kept exec's attachers; none: the chunk is dropped).
    void read_output(int fd, FrameOutbox& out, std::span<const uint32_t> streams, char* scratch, size_t scratch_size);
    void read_output(int fd, FrameOutbox& out, uint32_t stream, char* scratch, size_t scratch_size) {
        read_output(fd, out, std::span<const uint32_t>(&stream, 1), scratch, scratch_size);
    }

    // Stdin from the host: buffered, written when the pipe takes it, closed after Eof once drained.
    int stdin_fd_to_poll() const { return m_stdin_backlog.empty() ? -1 : m_stdin.get(); }
    size_t stdin_backlog() const { return m_stdin_backlog.size(); }
    void add_stdin(std::string_view data);
    void close_stdin_after_backlog();
    void write_stdin();

    // Signals every process of the exec: the cgroup leaf's members, else the process group.
    void signal_tree(int sig);
    // SIGKILL for the whole tree (cgroup.kill when there is a leaf).
    void kill_tree();

    std::optional<Clock::time_point> deadline() const { return m_deadline; }
    // On expiry: kill the tree and remember it timed out.
    void expire();

    // Reaps the main process if it has exited (waitpid(pid, WNOHANG)).
    void try_reap();
    // The main process's status, from whoever reaped it.
    void set_exited(int wait_status);
    bool exited() const { return m_exited; }

    // After the main process exited: forwards what the pipes hold right now (not waiting for EOF
    // that background processes may hold open), closes them, and returns the result.
    proto::ExecResult finish(FrameOutbox& out, std::span<const uint32_t> streams, char* scratch, size_t scratch_size);
    proto::ExecResult finish(FrameOutbox& out, uint32_t stream, char* scratch, size_t scratch_size) {
        return finish(out, std::span<const uint32_t>(&stream, 1), scratch, scratch_size);
    }

    bool takes_stdin() const { return m_stdin_wanted; }

private:
    ExecSession() = default;
    void forward(proto::FrameType type, FrameOutbox& out, std::span<const uint32_t> streams, const char* data,
                 size_t size);

    pid_t m_pid = -1;
    UniqueFd m_pidfd;
    UniqueFd m_stdin;
    UniqueFd m_stdout;
    UniqueFd m_stderr;
    std::string m_stdin_backlog;
    bool m_stdin_wanted = false;
    bool m_stdin_closing = false;
    std::optional<CgroupLeaf> m_cgroup;
    Clock::time_point m_started;
    Clock::time_point m_ended;
    std::optional<Clock::time_point> m_deadline;
    uint64_t m_output_limit = 0;
    uint64_t m_output_bytes = 0;
    bool m_truncated = false;
    bool m_timed_out = false;
    bool m_exited = false;
    int m_wait_status = 0;
};

}  // namespace kiln::agent
