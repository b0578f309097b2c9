// The agent's poll loop: decodes host frames, dispatches requests by op, and pumps exec and file streams.
#include "agent/server.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>

#include "agent/errno_codes.h"
#include "agent/exec_child.h"
#include "agent/file_ops.h"
#include "agent/identity.h"
#include "agent/log.h"
#include "base/errno_error.h"

#ifndef KILN_VERSION
#define KILN_VERSION "dev"
#endif

namespace kiln::agent {
namespace {

using proto::FrameType;
using nlohmann::json;

constexpr size_t kChunk = 64 * 1024;                 // largest Stdout/Stderr/Data frame the agent sends
constexpr size_t kPortReadPerTurn = 256 * 1024;      // host bytes decoded per loop turn, for fairness
constexpr size_t kPausePortAtOutbox = 8u << 20;      // stop reading requests while this much is unsent
constexpr size_t kPausePortAtStdinBacklog = 2u << 20;  // ... or while a child is this far behind on stdin
constexpr int kOrphanPollMs = 50;                    // fallback reaping when pidfd_open is unavailable

Error invalid(const std::string& message) { return make_error(ErrorCode::InvalidArgument, message); }

uint64_t uptime_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

}  // namespace

Result<std::unique_ptr<Server>> Server::create(ServerConfig config) {
    std::unique_ptr<Server> server(new Server(std::move(config)));
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    server->m_signal_fd.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!server->m_signal_fd) return errno_error("create a signalfd for SIGCHLD");
    server->m_scratch.resize(kChunk);
    // Dispositions and credentials are the agent's from start to end: taken once.
    server->m_exec_defaults.reset_signals = signals_not_at_default();
    server->m_exec_defaults.reset_scheduler = sched_getscheduler(0) != SCHED_OTHER;
    server->m_exec_defaults.credentials = Credentials::of_this_process();
    server->m_dev_null.reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
    server->m_exec_defaults.dev_null = server->m_dev_null.get();
    return server;
}

Server::~Server() {
    abandon_all_streams();
    // Killed above; wait for them so that a host test leaves no zombies behind.
    for (auto& orphan : m_orphans) waitpid(orphan.pid, nullptr, 0);
}

// ---- the loop ---------------------------------------------------------------------------------

RunEnd Server::run(int fd) {
    const sigset_t previous_mask = begin_connection(fd);
    std::optional<RunEnd> end;
    while (!end) {
        // One turn: what to wait for, the wait, what became ready (the host's frames are read and
        // dispatched here), then every stream moved on and the outbox flushed.
        const bool reap_by_polling = watch_fds();
        const int ready = wait_for_events(reap_by_polling);
        const bool child_event = handle_ready_fds(ready) || reap_by_polling;
        advance_streams(child_event);
        end = connection_end();
    }
    end_connection(previous_mask);
    return *end;
}

sigset_t Server::begin_connection(int fd) {
    sigset_t block, previous;
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);  // read through the signalfd
    sigaddset(&block, SIGPIPE);  // writes to a closed pipe or socket fail with EPIPE instead
    pthread_sigmask(SIG_BLOCK, &block, &previous);

    m_fd = fd;
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    m_disconnected = false;
    m_shutdown_requested = false;
    m_decoder = proto::FrameDecoder();
    m_outbox.clear();
    reap_children();  // orphans that exited between connections
    return previous;
}

bool Server::watch_fds() {
    // The vectors keep their capacity from turn to turn: no allocation in a steady loop.
    m_poll_fds.clear();
    m_poll_tags.clear();
    short port_events = 0;
    if (!port_input_paused()) port_events |= POLLIN;
    if (!m_outbox.empty()) port_events |= POLLOUT;
    watch(m_fd, port_events, PollKind::Port, 0);
    watch(m_signal_fd.get(), POLLIN, PollKind::Signals, 0);
    bool reap_by_polling = false;
    for (auto& [stream, exec] : m_execs) {
        if (exec->pidfd() >= 0) watch(exec->pidfd(), POLLIN, PollKind::ChildExit, stream);
        else if (!exec->exited()) reap_by_polling = true;
        // Back-pressure: output waits in the pipes (and the children block) while the host is behind.
        if (!m_outbox.congested()) {
            if (exec->stdout_fd() >= 0) watch(exec->stdout_fd(), POLLIN, PollKind::Stdout, stream);
            if (exec->stderr_fd() >= 0) watch(exec->stderr_fd(), POLLIN, PollKind::Stdout, stream);
        }
        if (exec->stdin_fd_to_poll() >= 0) watch(exec->stdin_fd_to_poll(), POLLOUT, PollKind::Stdin, stream);
    }
    if (watch_kept_fds()) reap_by_polling = true;
    m_watches.for_each_fd([this](int fd, uint32_t stream) { watch(fd, POLLIN, PollKind::Watch, stream); });
    for (auto& orphan : m_orphans) {
        if (orphan.pidfd) watch(orphan.pidfd.get(), POLLIN, PollKind::ChildExit, 0);
        else reap_by_polling = true;
    }
    return reap_by_polling;
}

void Server::watch(int fd, short events, PollKind kind, uint32_t stream) {
    m_poll_fds.push_back(pollfd{fd, events, 0});
    m_poll_tags.push_back(PollTag{kind, stream});
}

int Server::wait_for_events(bool reap_by_polling) {
    int timeout = poll_timeout_ms();
    // A child with no pidfd (pidfd_open unavailable) is looked at every kOrphanPollMs.
    if (reap_by_polling && (timeout < 0 || timeout > kOrphanPollMs)) timeout = kOrphanPollMs;
    int n = poll(m_poll_fds.data(), m_poll_fds.size(), timeout);
    if (n < 0 && errno != EINTR) {
        log_line(std::string("poll failed: ") + std::strerror(errno));
        usleep(10000);
    }
    return n;
}

bool Server::handle_ready_fds(int ready) {
    bool child_event = false;
    for (size_t i = 0; ready > 0 && i < m_poll_fds.size(); ++i) {
        short revents = m_poll_fds[i].revents;
        if (revents == 0) continue;
        const PollTag& tag = m_poll_tags[i];
        switch (tag.kind) {
        case PollKind::Port:
            if (revents & POLLIN) read_port();
            else if (revents & (POLLHUP | POLLERR | POLLNVAL)) m_disconnected = true;
            break;
        case PollKind::Signals: {
            struct signalfd_siginfo info;
            while (::read(m_signal_fd.get(), &info, sizeof info) == sizeof info) {
            }
            child_event = true;
            break;
        }
        case PollKind::ChildExit: child_event = true; break;
        case PollKind::Stdout: {
            auto it = m_execs.find(tag.stream);
            if (it != m_execs.end() && !m_outbox.congested())
                it->second->read_output(m_poll_fds[i].fd, m_outbox, tag.stream, m_scratch.data(), m_scratch.size());
            break;
        }
        case PollKind::Stdin: {
            auto it = m_execs.find(tag.stream);
            if (it != m_execs.end() && it->second->stdin_fd_to_poll() == m_poll_fds[i].fd) it->second->write_stdin();
            break;
        }
        case PollKind::KeptOutput:
        case PollKind::KeptStdin: handle_kept_fd(tag, m_poll_fds[i].fd); break;
        case PollKind::Watch: m_watches.on_readable(tag.stream); break;
        }
    }
    return child_event;
}

void Server::advance_streams(bool child_event) {
    if (child_event) reap_children();
    expire_deadlines();
    pump_file_reads();
    m_watches.pump(m_outbox);
    finish_exited_execs();
    advance_kept_processes();
    if (!m_disconnected && !m_outbox.empty() && m_outbox.flush(m_fd) == FrameOutbox::FlushResult::Broken)
        m_disconnected = true;
}

std::optional<RunEnd> Server::connection_end() {
    // A shutdown's answer goes out before the caller powers off (at most a second's wait).
    if (m_shutdown_requested && !m_disconnected) {
        flush_with_deadline(1000);
        return RunEnd::Shutdown;
    }
    if (m_disconnected) return RunEnd::Disconnected;
    return std::nullopt;
}

void Server::end_connection(const sigset_t& previous_mask) {
    abandon_all_streams();
    m_outbox.clear();
    m_fd = -1;
    // A write to the closed host end or to a child's closed stdin left a SIGPIPE pending on this
    // thread. Unblocking it would deliver it, and its default action kills the process (in host
    // tests, where SIGPIPE is not ignored as in PID 1); take it off the queue first.
    if (!sigismember(&previous_mask, SIGPIPE)) {
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        struct timespec zero {0, 0};
        while (sigtimedwait(&pipe_only, nullptr, &zero) == SIGPIPE) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &previous_mask, nullptr);
}

bool Server::port_input_paused() const {
    if (m_outbox.pending() >= kPausePortAtOutbox) return true;
    for (const auto& [stream, exec] : m_execs)
        if (exec->stdin_backlog() >= kPausePortAtStdinBacklog) return true;
    return m_processes.largest_stdin_backlog() >= kPausePortAtStdinBacklog;
}

int Server::poll_timeout_ms() const {
    if ((!m_readers.empty() || m_watches.has_events()) && !m_outbox.congested()) return 0;
    int timeout = -1;
    auto now = Clock::now();
    for (const auto& [stream, exec] : m_execs) {
        auto deadline = exec->deadline();
        if (!deadline) continue;
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(*deadline - now).count();
        int t = static_cast<int>(std::clamp<int64_t>(ms, 0, 60 * 60 * 1000));
        if (timeout < 0 || t < timeout) timeout = t;
    }
    if (auto wakeup = m_processes.next_wakeup()) {
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(*wakeup - now).count();
        int t = static_cast<int>(std::clamp<int64_t>(ms, 0, 60 * 60 * 1000));
        if (timeout < 0 || t < timeout) timeout = t;
    }
    return timeout;
}

bool Server::flush_with_deadline(int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        auto result = m_outbox.flush(m_fd);
        if (result == FrameOutbox::FlushResult::Drained) return true;
        if (result == FrameOutbox::FlushResult::Broken) return false;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return false;
        pollfd p{m_fd, POLLOUT, 0};
        poll(&p, 1, static_cast<int>(left));
    }
}

void Server::read_port() {
    size_t total = 0;
    while (total < kPortReadPerTurn && !m_shutdown_requested) {
        ssize_t n = ::read(m_fd, m_scratch.data(), m_scratch.size());
        if (n == 0) {
            m_disconnected = true;  // the host end closed (or, on virtio-serial, is not connected)
            break;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) m_disconnected = true;
            break;
        }
        total += static_cast<size_t>(n);
        m_decoder.feed(m_scratch.data(), static_cast<size_t>(n));
        for (;;) {
            auto frame = m_decoder.next();
            while (auto error = m_decoder.next_error()) handle_decode_error(*error);
            if (!frame) break;
            if (m_shutdown_requested) continue;  // nothing more is served once shutdown is answered
            handle_frame(*frame);
        }
    }
}

// ---- frames -----------------------------------------------------------------------------------

void Server::handle_decode_error(const proto::DecodeError& error) {
    // An Error frame ends its stream, so a stream hit by a malformed frame is abandoned.
    if (error.stream != 0 && is_active(error.stream)) abandon_stream(error.stream);
    m_outbox.push_error(error.stream, ErrorCode::MalformedFrame, error.message);
}

void Server::handle_frame(proto::Frame& frame) {
    uint32_t stream = frame.stream;
    switch (frame.type) {
    case FrameType::Request:
        try {
            handle_request(stream, frame.payload);
        } catch (const std::exception& e) {
            // Nothing the host sends may take PID 1 down; this is the one catch for stray exceptions.
            end_stream_with_error(stream, make_error(ErrorCode::IoError, std::string("internal error: ") + e.what()));
        }
        return;
    case FrameType::Stdin:
    case FrameType::Eof:
    case FrameType::Signal:
    case FrameType::Data:
        if (handle_process_frame(stream, frame)) {
            // an exec or attach stream's
        } else if (auto wit = m_writers.find(stream); wit != m_writers.end()) {
            handle_write_frame(stream, *wit->second, frame);
        } else if (m_readers.count(stream) || m_watches.contains(stream)) {
            end_stream_with_error(stream, invalid(std::string("unexpected ") + proto::frame_type_name(frame.type) +
                                                  (m_watches.contains(stream) ? " frame on a watch stream" : " frame on a read stream")));
        }
        // Otherwise the stream has ended already and this frame crossed our Result: drop it.
        return;
    case FrameType::Detach:
        if (m_watches.contains(stream)) m_watches.detach(stream, m_outbox);
        else handle_detach(stream);
        return;
    default:
        end_stream_with_error(stream, invalid(std::string("the host sent a ") + proto::frame_type_name(frame.type) +
                                              " frame, which only the agent sends"));
        return;
    }
}

void Server::handle_exec_frame(uint32_t stream, ExecSession& exec, proto::Frame& frame) {
    switch (frame.type) {
    case FrameType::Stdin: exec.add_stdin(frame.payload); return;
    case FrameType::Eof: exec.close_stdin_after_backlog(); return;
    case FrameType::Signal: {
        auto body = proto::parse_json_object(frame.payload);
        int sig = 0;
        if (body.ok()) {
            auto it = body->find("signal");
            if (it != body->end() && it->is_number_integer()) {
                int64_t v = it->get<int64_t>();
                if (v >= 1 && v < NSIG) sig = static_cast<int>(v);
            }
        }
        if (sig == 0) {
            end_stream_with_error(stream, invalid("a signal frame must be {\"signal\": N} with 1 <= N < " +
                                                  std::to_string(NSIG)));
            return;
        }
        exec.signal_tree(sig);
        return;
    }
    default: end_stream_with_error(stream, invalid("unexpected data frame on an exec stream")); return;
    }
}

void Server::handle_write_frame(uint32_t stream, FileWriter& writer, proto::Frame& frame) {
    switch (frame.type) {
    case FrameType::Data: {
        auto status = writer.append(frame.payload);
        if (!status.ok()) end_stream_with_error(stream, status.error());
        return;
    }
    case FrameType::Eof: {
        auto size = writer.commit();
        m_writers.erase(stream);
        if (!size.ok()) m_outbox.push_error(stream, size.error().code, size.error().message);
        else m_outbox.push_json(FrameType::Result, stream, json{{"size", *size}});
        return;
    }
    default:
        end_stream_with_error(stream, invalid(std::string("unexpected ") + proto::frame_type_name(frame.type) +
                                              " frame on a write stream"));
        return;
    }
}

void Server::handle_request(uint32_t stream, const std::string& payload) {
    if (stream == 0) {
        m_outbox.push_error(0, ErrorCode::InvalidArgument, "stream 0 is the connection itself and cannot carry a request");
        return;
    }
    if (is_active(stream)) {
        m_outbox.push_error(stream, ErrorCode::StreamInUse, "stream " + std::to_string(stream) + " is already in use");
        return;
    }
    auto body = proto::parse_json_object(payload);
    if (!body.ok()) {
        m_outbox.push_error(stream, body.error().code, "bad request: " + body.error().message);
        return;
    }
    auto op_it = body->find("op");
    if (op_it == body->end() || !op_it->is_string()) {
        m_outbox.push_error(stream, ErrorCode::InvalidArgument, "bad request: field 'op' must be a string");
        return;
    }
    const std::string op = op_it->get<std::string>();

    auto reply = [&](Result<json> result) {
        if (result.ok()) m_outbox.push_json(FrameType::Result, stream, *result);
        else m_outbox.push_error(stream, result.error().code, result.error().message);
    };
    auto started = [&](Status status) {
        if (!status.ok()) m_outbox.push_error(stream, status.error().code, status.error().message);
    };

    if (op == proto::op::kPing) return reply(op_ping());
    if (op == proto::op::kInit) return reply(op_init(*body));
    if (op == proto::op::kFreeze) return reply(op_freeze());
    if (op == proto::op::kReset) {
        size_t abandoned = active_streams();
        abandon_all_streams();
        return reply(json{{"abandoned", abandoned}});
    }
    if (op == proto::op::kShutdown) {
        m_outbox.push_json(FrameType::Result, stream, json::object());
        m_shutdown_requested = true;
        return;
    }
    const bool needs_ready = op == proto::op::kExec || op == proto::op::kRead || op == proto::op::kWrite ||
                             op == proto::op::kStat || op == proto::op::kList || op == proto::op::kMkdir ||
                             op == proto::op::kRemove || op == proto::op::kMove || op == proto::op::kWatch ||
                             is_kept_op(op);
    if (!needs_ready) {
        m_outbox.push_error(stream, ErrorCode::UnknownOp, "unknown op '" + op + "'");
        return;
    }
    if (!m_ready) {
        m_outbox.push_error(stream, ErrorCode::NotReady,
                            "'" + op + "' is refused until init renews this VM's identity (after boot, restore or freeze)");
        return;
    }
    const bool opens_stream =
        op == proto::op::kExec || op == proto::op::kRead || op == proto::op::kWrite || op == proto::op::kAttach ||
        op == proto::op::kWatch;
    if (opens_stream && active_streams() >= proto::kMaxStreams) {
        m_outbox.push_error(stream, ErrorCode::TooManyStreams,
                            "more than " + std::to_string(proto::kMaxStreams) + " streams at once");
        return;
    }
    if (is_kept_op(op)) return handle_kept_op(stream, op, *body);
    if (op == proto::op::kExec) return started(op_exec(stream, *body));
    if (op == proto::op::kRead) return started(op_read(stream, *body));
    if (op == proto::op::kWrite) return started(op_write(stream, *body));
    if (op == proto::op::kWatch) return started(m_watches.start(stream, *body, m_outbox));
    if (op == proto::op::kStat) {
        auto request = proto::parse_path_request(*body);
        if (!request.ok()) return reply(request.error());
        auto info = stat_path(request->path);
        if (!info.ok()) return reply(info.error());
        return reply(proto::to_json(*info));
    }
    if (op == proto::op::kList) {
        auto request = proto::parse_list_request(*body);
        if (!request.ok()) return reply(request.error());
        return reply(list_directory(*request));
    }
    if (op == proto::op::kMkdir) {
        auto request = proto::parse_mkdir_request(*body);
        if (!request.ok()) return reply(request.error());
        auto status = make_directory(*request);
        if (!status.ok()) return reply(status.error());
        return reply(json::object());
    }
    if (op == proto::op::kRemove) {
        auto request = proto::parse_remove_request(*body);
        if (!request.ok()) return reply(request.error());
        auto status = remove_path(*request);
        if (!status.ok()) return reply(status.error());
        return reply(json::object());
    }
    if (op == proto::op::kMove) {
        auto request = proto::parse_move_request(*body);
        if (!request.ok()) return reply(request.error());
        auto status = move_path(*request);
        if (!status.ok()) return reply(status.error());
        return reply(json::object());
    }
}

// ---- operations -------------------------------------------------------------------------------

Result<json> Server::op_ping() {
    proto::PingResult result;
    result.wire_version = proto::kWireVersion;
    result.agent_version = KILN_VERSION;
    result.ready = m_ready;
    result.uptime_ms = uptime_ms();
    return proto::to_json(result);
}

Result<json> Server::op_init(const json& body) {
    auto request = TRY(proto::parse_init_request(body));
    // Identity before readiness: no exec may run with a clone's shared RNG state or stale clock.
    if (m_config.pid1) {
        auto status = renew_identity(request);
        if (!status.ok()) {
            log_line("init failed: " + status.error().message);
            return make_error(ErrorCode::IoError, "init: " + status.error().message);
        }
    }
    m_sandbox_id = request.sandbox_id;
    m_ready = true;
    return json::object();
}

Result<json> Server::op_freeze() {
    // Before a snapshot: everything on disk, and every clone must be init'ed before it serves again.
    // What every first exec would otherwise do in each clone is done once here, into the snapshot:
    // under emulation a restored guest runs every code path cold (~10 us per translated block).
    prepare_for_exec();
    if (m_config.pid1) sync();
    m_ready = false;
    return json::object();
}

void Server::prepare_for_exec() {
    if (m_config.before_first_exec) std::exchange(m_config.before_first_exec, nullptr)();
    m_leaves.keep_one_spare();
    if (m_config.before_freeze) m_config.before_freeze();
}

Status Server::op_exec(uint32_t stream, const json& body) {
    auto request = TRY(proto::parse_exec_request(body));
    auto groups = TRY(apply_exec_user(request));
    if (request.keep && m_processes.running_count() >= proto::kMaxKeptProcesses)
        return make_error(ErrorCode::TooManyStreams,
                          "more than " + std::to_string(proto::kMaxKeptProcesses) + " kept processes at once");
    struct stat st;
    if (stat(request.cwd.c_str(), &st) != 0) return path_error("use as the working directory", request.cwd, errno);
    if (!S_ISDIR(st.st_mode)) return invalid("the working directory '" + request.cwd + "' is not a directory");

    if (m_config.before_first_exec) std::exchange(m_config.before_first_exec, nullptr)();
    std::optional<CgroupLeaf> leaf = m_leaves.acquire();
    auto session = ExecSession::start(request, leaf, m_exec_defaults, std::move(groups));
    if (!session.ok()) {
        if (leaf) m_leaves.release(std::move(*leaf));
        return std::move(session).error();
    }
    m_outbox.push_json(FrameType::Started, stream, json{{"pid", (*session)->pid()}});
    add_exec(stream, request, std::move(*session));
    return ok_status();
}

Status Server::op_read(uint32_t stream, const json& body) {
    auto request = TRY(proto::parse_path_request(body));
    FileReader reader = TRY(FileReader::open(request.path));
    m_readers.emplace(stream, std::move(reader));
    return ok_status();
}

Status Server::op_write(uint32_t stream, const json& body) {
    auto request = TRY(proto::parse_write_request(body));
    auto writer = TRY(FileWriter::create(request));
    m_writers.emplace(stream, std::move(writer));
    return ok_status();
}

// ---- streams ----------------------------------------------------------------------------------

bool Server::is_active(uint32_t stream) const {
    return m_execs.count(stream) || m_readers.count(stream) || m_writers.count(stream) || m_processes.has_stream(stream) ||
           m_watches.contains(stream);
}

void Server::end_stream_with_error(uint32_t stream, const Error& error) {
    abandon_stream(stream);
    m_outbox.push_error(stream, error.code, error.message);
}

void Server::abandon_stream(uint32_t stream) {
    if (auto it = m_execs.find(stream); it != m_execs.end()) {
        std::unique_ptr<ExecSession> exec = std::move(it->second);
        m_execs.erase(it);
        if (!exec->exited()) {
            exec->kill_tree();
            m_orphans.push_back(Orphan{exec->pid(), exec->release_pidfd()});
        }
        release_cgroup(*exec);
        return;  // the session's destructor closes the pipes
    }
    m_processes.drop_stream(stream);  // a kept exec goes on
    m_readers.erase(stream);
    m_writers.erase(stream);  // the writer's destructor unlinks its temp file
    m_watches.abandon(stream);
}

void Server::abandon_all_streams() {
    std::vector<uint32_t> streams;
    for (auto& [s, e] : m_execs) streams.push_back(s);
    for (auto& [s, r] : m_readers) streams.push_back(s);
    for (auto& [s, w] : m_writers) streams.push_back(s);
    m_watches.for_each_stream([&streams](uint32_t s) { streams.push_back(s); });
    for (uint32_t s : streams) abandon_stream(s);
    m_processes.drop_all_streams();
}

void Server::pump_file_reads() {
    // One chunk per reader per turn, in stream order, while the host keeps up.
    for (auto it = m_readers.begin(); it != m_readers.end() && !m_outbox.congested();) {
        uint32_t stream = it->first;
        auto n = it->second.read_chunk(m_scratch.data(), m_scratch.size());
        if (!n.ok()) {
            m_outbox.push_error(stream, n.error().code, n.error().message);
            it = m_readers.erase(it);
        } else if (*n == 0) {
            m_outbox.push_json(FrameType::Result, stream, json{{"size", it->second.bytes_read()}});
            it = m_readers.erase(it);
        } else {
            m_outbox.push(FrameType::Data, stream, std::string_view(m_scratch.data(), *n));
            ++it;
        }
    }
}

void Server::reap_children() {
    if (m_config.pid1) {
        // PID 1 inherits every orphan in the guest: reap them all, routing our execs' statuses.
        int status = 0;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            bool known = false;
            for (auto& [stream, exec] : m_execs) {
                if (exec->pid() == pid) {
                    exec->set_exited(status);
                    known = true;
                    break;
                }
            }
            if (!known) known = m_processes.set_exited(pid, status);
            if (!known)
                std::erase_if(m_orphans, [pid](const Orphan& o) { return o.pid == pid; });
        }
    }
    for (auto& [stream, exec] : m_execs) exec->try_reap();
    m_processes.try_reap();
    std::erase_if(m_orphans, [](const Orphan& o) {
        int status;
        pid_t r = waitpid(o.pid, &status, WNOHANG);
        return r == o.pid || (r < 0 && errno == ECHILD);
    });
    m_leaves.remove_emptied();
}

void Server::expire_deadlines() {
    auto now = Clock::now();
    for (auto& [stream, exec] : m_execs) {
        auto deadline = exec->deadline();
        if (deadline && *deadline <= now) exec->expire();
    }
}

void Server::finish_exited_execs() {
    for (auto it = m_execs.begin(); it != m_execs.end();) {
        if (!it->second->exited()) {
            ++it;
            continue;
        }
        auto result = it->second->finish(m_outbox, it->first, m_scratch.data(), m_scratch.size());
        m_outbox.push_json(FrameType::Result, it->first, proto::to_json(result));
        release_cgroup(*it->second);
        it = m_execs.erase(it);
    }
}

void Server::release_cgroup(ExecSession& exec) {
    // A leaf still holding background processes is removed once they are gone (retried on every reap).
    if (auto leaf = exec.take_cgroup()) m_leaves.release(std::move(*leaf));
}

}  // namespace kiln::agent
