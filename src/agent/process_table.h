// ProcessTable: the agent's kept execs (ExecRequest::keep), by pid. A kept exec outlives the
// stream that started it: any number of streams may be attached to it (its exec stream first,
// then attach requests), each getting its output from then on and its final Result; with none
// attached its output is read and dropped, so it never blocks and nothing accumulates. Its entry
// stays ~60 s after it exits so that a late attach still gets the Result.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "agent/exec_session.h"
#include "agent/frame_outbox.h"
#include "base/result.h"
#include "proto/messages.h"

namespace kiln::agent {

class ProcessTable {
public:
    static constexpr std::chrono::seconds kKeepExitedFor{60};

    struct Process {
        std::unique_ptr<ExecSession> session;  // null once finished
        proto::ProcessInfo info;
        std::vector<uint32_t> streams;  // attached, in attach order
        std::optional<proto::ExecResult> result;  // set when finished
        Clock::time_point finished_at{};
        bool running() const { return session != nullptr; }
    };

    ProcessTable() = default;
    ProcessTable(const ProcessTable&) = delete;
    ProcessTable& operator=(const ProcessTable&) = delete;
    // Kills every kept exec still running and waits for it (a host test's server going away; the
    // guest's agent never ends without powering off).
    ~ProcessTable();

    size_t running_count() const;
    // Takes a started kept exec, with `stream` (its exec stream) attached.
    void add(uint32_t stream, std::unique_ptr<ExecSession> session, proto::ProcessInfo info);

    // Streams.
    bool has_stream(uint32_t stream) const { return m_streams.count(stream) != 0; }
    size_t stream_count() const { return m_streams.size(); }
    // The running exec `stream` is attached to, for its Stdin/Eof/Signal frames.
    ExecSession* session_of(uint32_t stream);
    // Attaches `stream` to `pid`: its output from now on, then its Result; an exec that already
    // finished answers with its Result at once. NotFound for a pid the table does not hold.
    Status attach(uint32_t stream, int pid, FrameOutbox& out);
    // Ends `stream` with Result {"detached": true}; the exec goes on.
    void detach(uint32_t stream, FrameOutbox& out);
    // Forgets `stream` without a frame (abandoned, reset, disconnected); the exec goes on.
    void drop_stream(uint32_t stream);
    void drop_all_streams();

    // Operations by pid.
    std::vector<proto::ProcessInfo> list_running() const;
    Status signal(int pid, int sig);
    Status input(int pid, std::string_view data, bool eof);

    // The poll loop.
    const std::map<pid_t, Process>& processes() const { return m_processes; }
    // Reads one chunk of `fd` for `pid`'s attachers (or drops it).
    void read_output(pid_t pid, int fd, FrameOutbox& out, char* scratch, size_t scratch_size);
    void write_stdin(pid_t pid, int fd);
    // PID 1 routes what waitpid(-1) reaped; false when `pid` is none of the table's.
    bool set_exited(pid_t pid, int wait_status);
    void try_reap();
    void expire_deadlines(Clock::time_point now);
    // Sends each exited exec's last output and Result to its attachers, hands its cgroup leaf to
    // `release`, and forgets execs that finished more than kKeepExitedFor ago.
    void finish_exited(FrameOutbox& out, char* scratch, size_t scratch_size,
                       const std::function<void(std::optional<CgroupLeaf>)>& release);
    // The nearest time finish_exited or expire_deadlines has something to do without an event.
    std::optional<Clock::time_point> next_wakeup() const;
    size_t largest_stdin_backlog() const;

private:
    Process* running(int pid, Status& error);

    std::map<pid_t, Process> m_processes;
    std::map<uint32_t, pid_t> m_streams;
};

}  // namespace kiln::agent
