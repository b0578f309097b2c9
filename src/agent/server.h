// Server: the agent's single-threaded poll loop serving one host connection: frames in, streams out.
//
// Host tests drive it over one end of a socketpair in a thread with pid1 = false; in the guest,
// main() runs it on the virtio-serial port as PID 1 and reopens the port after every disconnect.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/cgroup_leaves.h"
#include "agent/exec_session.h"
#include "agent/file_reader.h"
#include "agent/file_writer.h"
#include "agent/frame_outbox.h"
#include "agent/process_table.h"
#include "agent/user_lookup.h"
#include "agent/watch_streams.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "proto/messages.h"
#include "proto/wire.h"

namespace kiln::agent {

struct ServerConfig {
    // PID 1 in the guest: init renews the kernel's identity (entropy, clock, hostname, ARP), every
    // child is reaped (waitpid(-1)), freeze syncs the disks. Off in host tests: init only sets ready.
    bool pid1 = false;
    // An existing cgroup v2 folder (e.g. /sys/fs/cgroup/kiln) for per-exec leaves; empty: process groups only.
    std::string cgroup_root;
    // Called once, before the first exec starts or at the first freeze, whichever comes first
    // (PID 1: the setup that only execs need).
    std::function<void()> before_first_exec;
    // Called at every freeze, before the guest syncs (PID 1: page in what clones' first execs need).
    std::function<void()> before_freeze;
    // Where exec's "user" is looked up (host tests point these at their own files).
    AccountFiles accounts;
};

// Why run() returned.
enum class RunEnd {
    Disconnected,  // EOF, POLLHUP or a write error on the connection: every stream was abandoned
    Shutdown,      // a shutdown request was answered and flushed; the caller powers off (PID 1) or exits
};

class Server {
public:
    static Result<std::unique_ptr<Server>> create(ServerConfig config);
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;
    ~Server();

    // Serves the connection `fd` (made non-blocking; not closed) until it ends. Blocks SIGCHLD and
    // SIGPIPE in the calling thread. State that outlives a connection: ready, the cgroup leaves.
    RunEnd run(int fd);

    bool ready() const { return m_ready; }

private:
    explicit Server(ServerConfig config) : m_config(std::move(config)), m_leaves(m_config.cgroup_root) {}

    struct Orphan {  // an abandoned exec's main process, still to be reaped
        pid_t pid;
        UniqueFd pidfd;
    };
    enum class PollKind { Port, Signals, ChildExit, Stdout, Stdin, KeptOutput, KeptStdin, Watch };
    struct PollTag {
        PollKind kind;
        uint32_t stream;  // the pid for the Kept kinds
    };

    // A connection, as run() serves it: begin_connection, then turns of the loop (watch_fds,
    // wait_for_events, handle_ready_fds, advance_streams) until connection_end says why it ends,
    // then end_connection.

    // Blocks SIGCHLD and SIGPIPE, makes `fd` non-blocking, resets the per-connection state; returns
    // the signal mask to restore.
    sigset_t begin_connection(int fd);
    // Fills the poll set (the port, the signalfd, the execs' and orphans' fds); true when some child
    // can only be reaped by polling for it.
    bool watch_fds();
    void watch(int fd, short events, PollKind kind, uint32_t stream);
    // poll() until something is ready or the nearest deadline; returns poll's count.
    int wait_for_events(bool reap_by_polling);
    // Reads the port (frames dispatched as they decode), the execs' output and stdin; true when a
    // child may have exited.
    bool handle_ready_fds(int ready);
    // Reaps, expires deadlines, pumps file reads, finishes exited execs, flushes the outbox.
    void advance_streams(bool child_event);
    // Why the connection ends now, if it does (a shutdown's answer flushed first).
    std::optional<RunEnd> connection_end();
    // Abandons every stream, drops a pending SIGPIPE and restores the signal mask.
    void end_connection(const sigset_t& previous_mask);

    // Frames from the host.
    void read_port();
    void handle_decode_error(const proto::DecodeError& error);
    void handle_frame(proto::Frame& frame);
    void handle_request(uint32_t stream, const std::string& payload);
    void handle_exec_frame(uint32_t stream, ExecSession& exec, proto::Frame& frame);
    void handle_write_frame(uint32_t stream, FileWriter& writer, proto::Frame& frame);

    // Operations.
    Result<nlohmann::json> op_ping();
    Result<nlohmann::json> op_init(const nlohmann::json& body);
    Result<nlohmann::json> op_freeze();
    // The set-up the first exec needs (ServerConfig::before_first_exec, one spare cgroup leaf,
    // ServerConfig::before_freeze), done at freeze: every clone of the snapshot starts with it done.
    void prepare_for_exec();
    Status op_exec(uint32_t stream, const nlohmann::json& body);
    Status op_read(uint32_t stream, const nlohmann::json& body);
    Status op_write(uint32_t stream, const nlohmann::json& body);

    // The process table (server_procs.cpp): kept execs, and exec's "user".
    // Resolves request.user into uid, gid, HOME/USER/LOGNAME and an empty cwd; returns its groups.
    Result<std::vector<gid_t>> apply_exec_user(proto::ExecRequest& request);
    // Files a started exec: kept ones in the table, the others in m_execs.
    void add_exec(uint32_t stream, const proto::ExecRequest& request, std::unique_ptr<ExecSession> session);
    bool is_kept_op(const std::string& op) const;
    void handle_kept_op(uint32_t stream, const std::string& op, const nlohmann::json& body);
    // Stdin/Eof/Signal/Detach on an exec or attach stream; false when `stream` is neither.
    bool handle_process_frame(uint32_t stream, proto::Frame& frame);
    void handle_detach(uint32_t stream);
    bool watch_kept_fds();
    void handle_kept_fd(const PollTag& tag, int fd);
    void advance_kept_processes();
    // Streams.
    size_t active_streams() const {
        return m_execs.size() + m_readers.size() + m_writers.size() + m_processes.stream_count() + m_watches.size();
    }
    bool is_active(uint32_t stream) const;
    void abandon_stream(uint32_t stream);
    void abandon_all_streams();
    void end_stream_with_error(uint32_t stream, const Error& error);
    void pump_file_reads();
    void reap_children();
    void finish_exited_execs();
    void expire_deadlines();
    void release_cgroup(ExecSession& exec);
    int poll_timeout_ms() const;
    bool port_input_paused() const;
    bool flush_with_deadline(int timeout_ms);

    ServerConfig m_config;
    CgroupLeaves m_leaves;
    UniqueFd m_signal_fd;
    UniqueFd m_dev_null;
    ExecDefaults m_exec_defaults;
    bool m_ready = false;
    std::string m_sandbox_id;

    // Per connection.
    int m_fd = -1;
    bool m_disconnected = false;
    bool m_shutdown_requested = false;
    proto::FrameDecoder m_decoder;
    FrameOutbox m_outbox;

    std::map<uint32_t, std::unique_ptr<ExecSession>> m_execs;
    ProcessTable m_processes;  // outlives connections
    std::map<uint32_t, FileReader> m_readers;
    std::map<uint32_t, std::unique_ptr<FileWriter>> m_writers;
    WatchStreams m_watches;
    std::vector<Orphan> m_orphans;
    std::vector<char> m_scratch;
    // The poll set of the current turn, tag i for fd i (kept between turns for their capacity).
    std::vector<pollfd> m_poll_fds;
    std::vector<PollTag> m_poll_tags;
};

}  // namespace kiln::agent
