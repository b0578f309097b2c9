// AgentClient: the host end of the kiln-agent protocol (src/proto) over the VM's agent unix socket.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "proto/messages.h"
#include "proto/wire.h"

namespace kiln::vm {

// Produces the next bytes into buf (at most cap); returns 0 at the end.
using ByteSource = std::function<Result<size_t>(char* buf, size_t cap)>;
// Consumes bytes; an error stops the transfer.
using ByteSink = std::function<Status(std::string_view)>;

ByteSource source_from_string(std::string data);

// Where an exec's streams go. Callbacks run on the thread that called exec(), in arrival order.
struct ExecIo {
    std::function<void(std::string_view)> on_stdout;
    std::function<void(std::string_view)> on_stderr;
    // The stream id is for send_signal() and detach(); attach() calls it at once with the pid asked for.
    std::function<void(uint32_t stream, int pid)> on_started;
    // Stdin, at most one of these (any of them sets ExecRequest::stdin; a kept exec may also set
    // ExecRequest::stdin itself and be fed with send_input()). Not used by attach():
    std::optional<std::string> stdin_data;  // sent, then Eof
    int stdin_fd = -1;       // read until EOF (not owned); abandoned as soon as the command ends
    ByteSource stdin_source; // pulled on a helper thread; exec() returns only after it returns 0 or fails
    // How long the host waits in all. Zero: the request's timeout_ms plus a grace period, or
    // forever when timeout_ms is 0 (the call still ends if the VM goes away).
    Millis host_timeout{0};
};

// An exec's result with its output collected.
struct ExecOutput {
    proto::ExecResult result;
    std::string stdout_data;
    std::string stderr_data;
};

// Thread-safe: any number of calls may run at once from any threads (each gets its own stream).
// A reader thread decodes frames and routes them by stream id to the waiting call; a call's
// queue holds at most kMaxQueuedBytes, beyond which the reader stops reading the socket
// (backpressure to the guest). When the connection drops, every pending and later call returns
// Error{ErrorCode::VmGone, ...} at once; set_gone_reason() lets the owner explain why (panic, QEMU exit).
class AgentClient {
public:
    static constexpr size_t kMaxQueuedBytes = 4 * 1024 * 1024;
    static constexpr size_t kChunk = 64 * 1024;  // Data/Stdin frame payloads
    static constexpr Millis kDefaultFrameSendTimeout{120000};

    // Connects to the agent socket (retrying while QEMU creates it).
    static Result<std::unique_ptr<AgentClient>> connect(const std::string& socket_path, Millis timeout,
                                                        const std::function<std::optional<Error>()>& should_stop = {});
    // Wraps an already connected stream socket (tests use a socketpair).
    static std::unique_ptr<AgentClient> adopt(UniqueFd fd);
    ~AgentClient();  // Closes the connection; call it only when no call is in flight.

    AgentClient(const AgentClient&) = delete;
    AgentClient& operator=(const AgentClient&) = delete;

    Result<proto::PingResult> ping(Millis timeout = Millis(5000));
    Status init(const proto::InitRequest& request, Millis timeout = Millis(10000));
    Status freeze(Millis timeout = Millis(30000));
    // A kept exec (request.keep) returns a Result with `detached` once detach() ends its stream.
    Result<proto::ExecResult> exec(proto::ExecRequest request, const ExecIo& io = {});
    // exec() with stdout and stderr collected, each up to max_output bytes (the rest is dropped).
    Result<ExecOutput> exec_collect(proto::ExecRequest request, std::optional<std::string> stdin_data = std::nullopt,
                                    size_t max_output = 64 * 1024 * 1024);
    // The same with `io`'s stdin and host timeout (its on_stdout and on_stderr are replaced).
    Result<ExecOutput> exec_collect(proto::ExecRequest request, ExecIo io, size_t max_output);
    // Streams the guest file to `sink`; returns its size.
    Result<uint64_t> read_file(const std::string& path, const ByteSink& sink, Millis timeout = Millis(600000));
    // Writes the guest file from `source` in chunks of at most kChunk bytes; returns the size written.
    Result<uint64_t> write_file(const std::string& path, const ByteSource& source, uint32_t mode = 0644,
                                Millis timeout = Millis(600000));
    // The same with every field of the request (its user, parents).
    Result<uint64_t> write_file(const proto::WriteRequest& request, const ByteSource& source,
                                Millis timeout = Millis(600000));
    Result<proto::FileInfo> stat(const std::string& path, Millis timeout = Millis(10000));
    Result<std::vector<proto::FileInfo>> list(const std::string& path, Millis timeout = Millis(10000));
    // A listing request.depth levels deep; each entry carries its full path.
    Result<std::vector<proto::FileInfo>> list(const proto::ListRequest& request, Millis timeout = Millis(30000));
    // rename(2) in the guest.
    Status move(const std::string& from, const std::string& to, Millis timeout = Millis(10000));
    // Watches a guest folder: on_event for each change (on this thread, in order) until `stop` is
    // set (checked every ~100 ms; the watch is then detached and this returns ok) or the folder
    // goes away (its error). on_started, when given, runs once the agent watches (events from
    // then on are seen).
    Status watch(const std::string& path, bool recursive, const std::function<void(const proto::WatchEvent&)>& on_event,
                 const std::atomic<bool>& stop, const std::function<void()>& on_started = {});
    Status mkdir(const proto::MkdirRequest& request, Millis timeout = Millis(10000));
    Status remove(const proto::RemoveRequest& request, Millis timeout = Millis(60000));
    // Asks the agent to sync, remount / read-only and reboot (which ends QEMU with -no-reboot).
    Status shutdown(Millis timeout = Millis(10000));

    // Sends a Signal frame to a running exec (its stream id comes from ExecIo::on_started).
    Status send_signal(uint32_t stream, int signal);
    // Sends `reset` on kResetStream without waiting for its Result (which is dropped): the first
    // frame on a connection to a guest whose agent may still hold streams of an earlier host (a
    // restored or forked guest). Kept processes are detached, other execs killed.
    Status send_reset();
    // Even: never a call's stream (those are odd), so it cannot collide with an earlier host's.
    static constexpr uint32_t kResetStream = 2;

    // Kept processes (the agent's process table, docs/agent-protocol.md).
    // Ends the exec or attach call on `stream` (from ExecIo::on_started): that call returns an
    // ExecResult with `detached`, and a kept process goes on; one not kept is killed and its
    // call returns an error saying so.
    Status detach(uint32_t stream);
    // Follows a kept process from now on: its output to `io`, then its ExecResult (at once if it
    // has exited within the last minute). NotFound for a pid the agent does not keep.
    Result<proto::ExecResult> attach(int pid, const ExecIo& io = {});
    // The kept processes still running.
    Result<std::vector<proto::ProcessInfo>> processes(Millis timeout = Millis(10000));
    // Signals a kept process's whole tree.
    Status signal_process(int pid, int signal, Millis timeout = Millis(10000));
    // Writes to a kept process's stdin (started with ExecRequest::stdin), in pieces of at most
    // proto::kMaxInputBytes; close_input ends it after what was sent.
    Status send_input(int pid, std::string_view data, Millis timeout = Millis(30000));
    Status close_input(int pid, Millis timeout = Millis(10000));
    // Writes bytes as they are, for malformed-frame tests.
    Status send_raw(std::string_view bytes);
    // The next connection-level error: an Error frame on stream 0 or on a stream no call waits
    // for, or bytes from the agent this client could not decode. Nothing on timeout.
    std::optional<Error> wait_connection_error(Millis timeout);

    // How long the guest has to take one whole frame once this client holds the connection to
    // write it. A frame cannot be abandoned half-written without corrupting every stream, so a
    // guest that stops reading for this long is declared gone: the connection fails for every
    // call with VmGone ("the guest stopped reading ...") and the VM's owner sees !alive().
    // An operation's own shorter deadline still ends it with Timeout while none of its frame
    // has gone out.
    void set_frame_send_timeout(Millis timeout);

    // Called once, on the reader thread, when the connection drops: its Error is what every
    // pending and later call returns. It may block briefly (e.g. to wait for QEMU's exit status).
    void set_gone_reason(std::function<Error()> reason);
    // Ends the connection now: every pending and later call returns `error`.
    void fail_all(Error error);
    bool alive() const;
    std::optional<Error> gone_error() const;

private:
    struct Call;
    explicit AgentClient(UniqueFd fd);

    Result<std::shared_ptr<Call>> open_stream(const proto::json& request, Clock::time_point deadline);
    void close_stream(const std::shared_ptr<Call>& call);
    // The next frame for `call`, or an error when the connection is gone or the deadline passed.
    Result<proto::Frame> next_frame(const std::shared_ptr<Call>& call, Clock::time_point deadline,
                                    const std::string& what);
    // A request whose answer is one Result frame.
    Result<proto::json> simple_call(const char* op, proto::json fields, Millis timeout);
    // Routes an exec or attach stream's frames to `io` until its Result or Error.
    Result<proto::ExecResult> follow_exec_stream(const std::shared_ptr<Call>& call, const ExecIo& io,
                                                 Clock::time_point deadline, const char* what,
                                                 const std::function<void()>& on_end);
    Status send_frame(proto::FrameType type, uint32_t stream, std::string_view payload, Clock::time_point deadline,
                      const std::atomic<bool>* cancel = nullptr);
    Status send_bytes(std::string_view bytes, Clock::time_point deadline, const std::atomic<bool>* cancel);
    Error send_failure(const Error& error);

    void reader_loop();
    void dispatch(proto::Frame frame);
    void push_connection_error(Error error);
    void mark_gone(Error error);

    UniqueFd m_fd;
    std::thread m_reader;
    std::atomic<bool> m_stopping{false};
    // Frames are written whole, one at a time: a sender holds the slot for one frame. (A slot with
    // a condition variable rather than std::timed_mutex: a deadline, and ThreadSanitizer-clean.)
    std::mutex m_send_mutex;
    std::condition_variable m_send_cv;
    bool m_sending = false;  // guarded by m_send_mutex
    std::atomic<int64_t> m_frame_send_timeout_ms{kDefaultFrameSendTimeout.count()};

    mutable std::mutex m_mutex;  // guards everything below
    std::condition_variable m_cv;  // connection errors
    std::map<uint32_t, std::shared_ptr<Call>> m_calls;
    uint32_t m_next_stream = 1;  // odd ids, allocated by the host
    std::optional<Error> m_gone;
    std::function<Error()> m_gone_reason;
    std::deque<Error> m_connection_errors;
};

}  // namespace kiln::vm
