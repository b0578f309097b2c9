// AgentClient: stream allocation, frame routing, backpressure, and fail-fast when the VM goes away.
#include "vm/agent_client.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/errno_error.h"
#include "base/unix_socket.h"

namespace kiln::vm {

using proto::Frame;
using proto::FrameType;
using proto::json;

struct AgentClient::Call {
    uint32_t stream = 0;
    std::mutex mutex;  // guards everything below
    std::condition_variable cv;
    std::deque<Frame> frames;
    size_t queued_bytes = 0;
    std::optional<Error> failure;  // the connection went away
    bool abandoned = false;        // the caller stopped listening
};

namespace {

constexpr size_t kMaxConnectionErrors = 256;

Error protocol_error(const std::string& message) { return make_error(ErrorCode::ProtocolError, message); }

// "120 s", "2.5 s".
std::string seconds_text(Millis ms) {
    char text[32];
    if (ms.count() % 1000 == 0) std::snprintf(text, sizeof text, "%lld s", static_cast<long long>(ms.count() / 1000));
    else std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(ms.count()) / 1000.0);
    return text;
}

bool is_final(FrameType type) { return type == FrameType::Result || type == FrameType::Error; }

// The final frame of a simple request as JSON, or its error.
Result<json> result_json(const Frame& frame, const std::string& what) {
    if (frame.type == FrameType::Error) return proto::parse_error_body(frame.payload);
    if (frame.type != FrameType::Result)
        return protocol_error(what + ": unexpected " + proto::frame_type_name(frame.type) + " frame");
    return proto::parse_json_object(frame.payload);
}

// The "size" a read or write Result reports, or `fallback` when it has none. Anything but an
// unsigned integer is the agent's error: json::value() would throw instead, out of the call.
Result<uint64_t> result_size(const json& result, uint64_t fallback, const std::string& what) {
    auto it = result.find("size");
    if (it == result.end()) return fallback;
    if (!it->is_number_unsigned()) return protocol_error(what + ": the agent's 'size' is not a byte count");
    return it->get<uint64_t>();
}

}  // namespace

ByteSource source_from_string(std::string data) {
    auto shared = std::make_shared<std::string>(std::move(data));
    auto offset = std::make_shared<size_t>(0);
    return [shared, offset](char* buf, size_t cap) -> Result<size_t> {
        size_t n = std::min(cap, shared->size() - *offset);
        std::memcpy(buf, shared->data() + *offset, n);
        *offset += n;
        return n;
    };
}

AgentClient::AgentClient(UniqueFd fd) : m_fd(std::move(fd)) {}

Result<std::unique_ptr<AgentClient>> AgentClient::connect(const std::string& socket_path, Millis timeout,
                                                          const std::function<std::optional<Error>()>& should_stop) {
    UniqueFd fd = TRY(connect_unix_retry(socket_path, timeout, should_stop));
    return adopt(std::move(fd));
}

std::unique_ptr<AgentClient> AgentClient::adopt(UniqueFd fd) {
    (void)set_nonblocking(fd.get());
    std::unique_ptr<AgentClient> client(new AgentClient(std::move(fd)));
    client->m_reader = std::thread([c = client.get()] { c->reader_loop(); });
    return client;
}

AgentClient::~AgentClient() {
    m_stopping = true;
    ::shutdown(m_fd.get(), SHUT_RDWR);
    if (m_reader.joinable()) m_reader.join();
}

// ---- the reader thread ----

void AgentClient::reader_loop() {
    proto::FrameDecoder decoder;
    std::string buf(256 * 1024, '\0');
    std::string why = "the agent connection closed";
    while (!m_stopping) {
        struct pollfd p{m_fd.get(), POLLIN, 0};
        int r = ::poll(&p, 1, -1);
        if (r < 0) {
            if (errno == EINTR) continue;
            why = "poll on the agent socket failed";
            break;
        }
        ssize_t n = ::read(m_fd.get(), buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            why = std::string("reading the agent socket failed: ") + std::strerror(errno);
            break;
        }
        if (n == 0) break;
        decoder.feed(buf.data(), static_cast<size_t>(n));
        while (auto frame = decoder.next()) dispatch(std::move(*frame));
        while (auto e = decoder.next_error())
            push_connection_error(protocol_error("host could not decode agent bytes: " + e->message));
    }
    if (m_stopping) {
        mark_gone(make_error(ErrorCode::VmGone, "the agent client was closed"));
        return;
    }
    std::function<Error()> reason;
    {
        std::lock_guard lock(m_mutex);
        if (m_gone) return;
        reason = m_gone_reason;
    }
    mark_gone(reason ? reason() : make_error(ErrorCode::VmGone, why));
}

void AgentClient::dispatch(Frame frame) {
    std::shared_ptr<Call> call;
    {
        std::lock_guard lock(m_mutex);
        if (frame.stream != 0) {
            auto it = m_calls.find(frame.stream);
            if (it != m_calls.end()) {
                call = it->second;
                if (is_final(frame.type)) m_calls.erase(it);  // late frames for this id are dropped
            }
        }
    }
    if (!call) {
        if (frame.type == FrameType::Error) {
            Error e = proto::parse_error_body(frame.payload);
            if (frame.stream != 0) e.message = "(stream " + std::to_string(frame.stream) + ") " + e.message;
            push_connection_error(std::move(e));
        }
        return;  // output of a call that gave up, or noise on stream 0
    }
    std::unique_lock lock(call->mutex);
    // Backpressure: a slow consumer stalls the socket instead of growing memory.
    while (call->queued_bytes > kMaxQueuedBytes && !call->abandoned && !m_stopping)
        call->cv.wait_for(lock, Millis(100));
    if (call->abandoned) return;
    call->queued_bytes += frame.payload.size();
    call->frames.push_back(std::move(frame));
    call->cv.notify_all();
}

void AgentClient::push_connection_error(Error error) {
    std::lock_guard lock(m_mutex);
    m_connection_errors.push_back(std::move(error));
    if (m_connection_errors.size() > kMaxConnectionErrors) m_connection_errors.pop_front();
    m_cv.notify_all();
}

void AgentClient::mark_gone(Error error) {
    std::map<uint32_t, std::shared_ptr<Call>> calls;
    {
        std::lock_guard lock(m_mutex);
        if (m_gone) return;
        m_gone = error;
        calls.swap(m_calls);
        m_cv.notify_all();
    }
    for (auto& [id, call] : calls) {
        std::lock_guard lock(call->mutex);
        call->failure = error;
        call->cv.notify_all();
    }
}

void AgentClient::set_gone_reason(std::function<Error()> reason) {
    std::lock_guard lock(m_mutex);
    m_gone_reason = std::move(reason);
}

void AgentClient::fail_all(Error error) {
    mark_gone(std::move(error));
    ::shutdown(m_fd.get(), SHUT_RDWR);  // the reader sees EOF and exits; m_gone is already set
}

bool AgentClient::alive() const {
    std::lock_guard lock(m_mutex);
    return !m_gone;
}

std::optional<Error> AgentClient::gone_error() const {
    std::lock_guard lock(m_mutex);
    return m_gone;
}

// ---- streams ----

Status AgentClient::send_frame(FrameType type, uint32_t stream, std::string_view payload, Clock::time_point deadline,
                               const std::atomic<bool>* cancel) {
    std::string bytes = proto::encode_frame(type, stream, payload);
    return send_bytes(bytes, deadline, cancel);
}

Status AgentClient::send_bytes(std::string_view bytes, Clock::time_point deadline, const std::atomic<bool>* cancel) {
    {
        std::unique_lock lock(m_send_mutex);
        auto free = [this] { return !m_sending; };
        if (deadline == Clock::time_point::max()) m_send_cv.wait(lock, free);
        else if (!m_send_cv.wait_until(lock, deadline, free))
            return make_error(ErrorCode::Timeout, "the agent connection is busy");
        m_sending = true;
    }
    struct Release {
        AgentClient* self;
        ~Release() {
            std::lock_guard lock(self->m_send_mutex);
            self->m_sending = false;
            self->m_send_cv.notify_one();
        }
    } release{this};
    // Once the first byte is out, the caller's deadline and cancel no longer apply: a partial
    // frame would corrupt the connection for every stream. The frame's own deadline does: a
    // guest that has not taken the whole frame by then stopped reading, and the connection ends.
    const Millis frame_timeout(m_frame_send_timeout_ms.load());
    const auto frame_deadline = Clock::now() + frame_timeout;
    size_t done = 0;
    while (done < bytes.size()) {
        if (m_stopping) return make_error(ErrorCode::VmGone, "the agent client was closed");
        if (done == 0) {
            if (cancel && *cancel) return make_error(ErrorCode::Cancelled, "cancelled");
            std::lock_guard state(m_mutex);
            if (m_gone) return *m_gone;
        }
        ssize_t n = ::send(m_fd.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
        if (n >= 0) {
            done += static_cast<size_t>(n);
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return errno_error("send to the agent");
        auto now = Clock::now();
        if (done == 0 && now >= deadline && deadline < frame_deadline)
            return make_error(ErrorCode::Timeout, "the agent is not reading");
        if (now >= frame_deadline) {
            Error stalled = make_error(ErrorCode::VmGone, "the guest stopped reading: it took " + std::to_string(done) +
                                                              " of the " + std::to_string(bytes.size()) +
                                                              " bytes of a frame in " + seconds_text(frame_timeout) +
                                                              " (agent_send_timeout)");
            fail_all(stalled);
            std::lock_guard state(m_mutex);
            return m_gone ? *m_gone : stalled;
        }
        if (done > 0) {
            std::lock_guard state(m_mutex);
            if (m_gone) return *m_gone;
        }
        struct pollfd p{m_fd.get(), POLLOUT, 0};
        if (::poll(&p, 1, 100) < 0 && errno != EINTR) return errno_error("poll the agent socket");
    }
    return ok_status();
}

void AgentClient::set_frame_send_timeout(Millis timeout) { m_frame_send_timeout_ms = std::max<int64_t>(1, timeout.count()); }

Error AgentClient::send_failure(const Error& error) {
    // A write fails when the peer is gone; the reader is about to learn why. Prefer its reason.
    auto until = Clock::now() + Millis(5000);
    std::unique_lock lock(m_mutex);
    if (error.code != ErrorCode::Timeout) m_cv.wait_until(lock, until, [this] { return m_gone.has_value(); });
    if (m_gone) return *m_gone;
    return make_error(error.code == ErrorCode::Timeout ? ErrorCode::Timeout : ErrorCode::VmGone, "sending to the agent: " + error.message);
}

Result<std::shared_ptr<AgentClient::Call>> AgentClient::open_stream(const json& request, Clock::time_point deadline) {
    auto call = std::make_shared<Call>();
    {
        std::lock_guard lock(m_mutex);
        if (m_gone) return *m_gone;
        // Odd ids; skip any still in use after a wrap-around.
        do {
            call->stream = m_next_stream;
            m_next_stream += 2;
        } while (m_calls.count(call->stream));
        m_calls[call->stream] = call;
    }
    Status sent = send_frame(FrameType::Request, call->stream, request.dump(), deadline);
    if (!sent.ok()) {
        close_stream(call);
        return send_failure(sent.error());
    }
    return call;
}

void AgentClient::close_stream(const std::shared_ptr<Call>& call) {
    {
        std::lock_guard lock(m_mutex);
        auto it = m_calls.find(call->stream);
        if (it != m_calls.end() && it->second == call) m_calls.erase(it);
    }
    std::lock_guard lock(call->mutex);
    call->abandoned = true;
    call->frames.clear();
    call->queued_bytes = 0;
    call->cv.notify_all();
}

Result<Frame> AgentClient::next_frame(const std::shared_ptr<Call>& call, Clock::time_point deadline,
                                      const std::string& what) {
    std::unique_lock lock(call->mutex);
    for (;;) {
        if (!call->frames.empty()) {
            Frame frame = std::move(call->frames.front());
            call->frames.pop_front();
            call->queued_bytes -= frame.payload.size();
            call->cv.notify_all();  // room for the reader
            return frame;
        }
        if (call->failure) return *call->failure;
        if (deadline == Clock::time_point::max()) {
            call->cv.wait(lock);
        } else if (call->cv.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline &&
                   call->frames.empty() && !call->failure) {
            return make_error(ErrorCode::Timeout, what + ": no answer from the agent in time");
        }
    }
}

Result<json> AgentClient::simple_call(const char* op, json fields, Millis timeout) {
    auto deadline = deadline_after(timeout);
    auto call = TRY(open_stream(proto::make_request(op, std::move(fields)), deadline));
    for (;;) {
        auto frame = next_frame(call, deadline, op);
        if (!frame.ok()) {
            close_stream(call);
            return std::move(frame).error();
        }
        if (is_final(frame->type)) {
            close_stream(call);
            return result_json(*frame, op);
        }
        // Anything else on a simple request is ignored (forward compatibility).
    }
}

// ---- operations ----

Result<proto::PingResult> AgentClient::ping(Millis timeout) {
    json j = TRY(simple_call(proto::op::kPing, json::object(), timeout));
    return proto::parse_ping_result(j);
}

Status AgentClient::init(const proto::InitRequest& request, Millis timeout) {
    TRY(simple_call(proto::op::kInit, proto::to_json(request), timeout));
    return ok_status();
}

Status AgentClient::freeze(Millis timeout) {
    TRY(simple_call(proto::op::kFreeze, json::object(), timeout));
    return ok_status();
}

Status AgentClient::shutdown(Millis timeout) {
    TRY(simple_call(proto::op::kShutdown, json::object(), timeout));
    return ok_status();
}

Result<proto::FileInfo> AgentClient::stat(const std::string& path, Millis timeout) {
    json j = TRY(simple_call(proto::op::kStat, proto::to_json(proto::PathRequest{path}), timeout));
    return proto::parse_file_info(j);
}

Result<std::vector<proto::FileInfo>> AgentClient::list(const std::string& path, Millis timeout) {
    return list(proto::ListRequest{path, 1}, timeout);
}

Result<std::vector<proto::FileInfo>> AgentClient::list(const proto::ListRequest& request, Millis timeout) {
    json j = TRY(simple_call(proto::op::kList, proto::to_json(request), timeout));
    auto it = j.find("entries");
    if (it == j.end() || !it->is_array()) return protocol_error("list: no 'entries' array");
    std::vector<proto::FileInfo> entries;
    entries.reserve(it->size());
    for (const auto& e : *it) entries.push_back(TRY(proto::parse_file_info(e)));
    return entries;
}

Status AgentClient::mkdir(const proto::MkdirRequest& request, Millis timeout) {
    TRY(simple_call(proto::op::kMkdir, proto::to_json(request), timeout));
    return ok_status();
}

Status AgentClient::remove(const proto::RemoveRequest& request, Millis timeout) {
    TRY(simple_call(proto::op::kRemove, proto::to_json(request), timeout));
    return ok_status();
}

Status AgentClient::move(const std::string& from, const std::string& to, Millis timeout) {
    TRY(simple_call(proto::op::kMove, proto::to_json(proto::MoveRequest{from, to}), timeout));
    return ok_status();
}

Status AgentClient::watch(const std::string& path, bool recursive,
                          const std::function<void(const proto::WatchEvent&)>& on_event, const std::atomic<bool>& stop,
                          const std::function<void()>& on_started) {
    const std::string what = "watch " + path;
    constexpr Millis kStopPoll(100);
    constexpr Millis kDetachAnswer(10000);
    auto call = TRY(open_stream(proto::make_request(proto::op::kWatch, proto::to_json(proto::WatchRequest{path, recursive})),
                                deadline_after(Millis(10000))));
    std::optional<Clock::time_point> detached;  // when the Detach went out
    auto detach = [&]() -> Status {
        detached = Clock::now();
        Status st = send_frame(FrameType::Detach, call->stream, {}, deadline_after(Millis(5000)));
        return st.ok() ? st : Status(send_failure(st.error()));
    };
    for (;;) {
        if (!detached && stop) {
            Status st = detach();
            if (!st.ok()) {
                close_stream(call);
                return st;
            }
        }
        auto frame = next_frame(call, Clock::now() + kStopPoll, what);
        if (!frame.ok()) {
            bool waiting = frame.error().code == ErrorCode::Timeout && (!detached || Clock::now() - *detached < kDetachAnswer);
            if (waiting) continue;
            close_stream(call);
            if (detached && frame.error().code == ErrorCode::Timeout)
                return make_error(ErrorCode::Timeout, what + ": the agent did not end the watch after Detach");
            return std::move(frame).error();
        }
        switch (frame->type) {
        case FrameType::Started:
            if (on_started && !detached) on_started();
            break;
        case FrameType::Data: {
            if (detached) break;  // the caller wants no more
            auto event = proto::parse_json_object(frame->payload);
            auto parsed = event.ok() ? proto::parse_watch_event(*event) : Result<proto::WatchEvent>(event.error());
            if (!parsed.ok()) {
                (void)detach();
                close_stream(call);
                return protocol_error(what + ": the agent sent a bad event: " + parsed.error().message);
            }
            if (on_event) on_event(*parsed);
            break;
        }
        case FrameType::Result:
        case FrameType::Error:
            close_stream(call);
            TRY(result_json(*frame, what));
            return ok_status();
        default: break;
        }
    }
}

Status AgentClient::send_signal(uint32_t stream, int signal) {
    Status st = send_frame(FrameType::Signal, stream, json{{"signal", signal}}.dump(), deadline_after(Millis(5000)));
    if (!st.ok()) return send_failure(st.error());
    return ok_status();
}

Status AgentClient::send_reset() {
    std::string body = proto::make_request(proto::op::kReset).dump();
    Status st = send_frame(FrameType::Request, kResetStream, body, deadline_after(Millis(5000)));
    if (!st.ok()) return send_failure(st.error());
    return ok_status();
}

Status AgentClient::send_raw(std::string_view bytes) {
    Status st = send_bytes(bytes, deadline_after(Millis(10000)), nullptr);
    if (!st.ok()) return send_failure(st.error());
    return ok_status();
}

std::optional<Error> AgentClient::wait_connection_error(Millis timeout) {
    std::unique_lock lock(m_mutex);
    m_cv.wait_for(lock, timeout, [this] { return !m_connection_errors.empty(); });
    if (m_connection_errors.empty()) return std::nullopt;
    Error e = std::move(m_connection_errors.front());
    m_connection_errors.pop_front();
    return e;
}

Result<uint64_t> AgentClient::read_file(const std::string& path, const ByteSink& sink, Millis timeout) {
    auto deadline = deadline_after(timeout);
    auto call = TRY(open_stream(proto::make_request(proto::op::kRead, proto::to_json(proto::PathRequest{path})), deadline));
    uint64_t received = 0;
    for (;;) {
        auto frame = next_frame(call, deadline, "read " + path);
        if (!frame.ok()) {
            close_stream(call);
            return std::move(frame).error();
        }
        if (frame->type == FrameType::Data) {
            received += frame->payload.size();
            if (sink) {
                Status st = sink(frame->payload);
                if (!st.ok()) {
                    close_stream(call);  // the agent's remaining Data is dropped on arrival
                    return st.error();
                }
            }
            continue;
        }
        if (!is_final(frame->type)) continue;
        close_stream(call);
        json j = TRY(result_json(*frame, "read " + path));
        uint64_t size = TRY(result_size(j, received, "read " + path));
        if (size != received)
            return protocol_error("read " + path + ": the agent reported " + std::to_string(size) + " bytes but sent " +
                                  std::to_string(received));
        return received;
    }
}

Result<uint64_t> AgentClient::write_file(const std::string& path, const ByteSource& source, uint32_t mode,
                                         Millis timeout) {
    return write_file(proto::WriteRequest{path, mode, true, {}}, source, timeout);
}

Result<uint64_t> AgentClient::write_file(const proto::WriteRequest& request, const ByteSource& source, Millis timeout) {
    const std::string& path = request.path;
    auto deadline = deadline_after(timeout);
    auto call = TRY(open_stream(proto::make_request(proto::op::kWrite, proto::to_json(request)), deadline));
    std::string buf(kChunk, '\0');
    uint64_t sent = 0;
    bool stopped_early = false;  // the agent answered (an error) or the VM went away before the end
    for (;;) {
        {
            // Stop sending as soon as the agent has answered (an error) or the VM is gone.
            std::lock_guard lock(call->mutex);
            if (call->failure || (!call->frames.empty() && is_final(call->frames.back().type))) stopped_early = true;
        }
        if (stopped_early) break;
        auto n = source ? source(buf.data(), buf.size()) : Result<size_t>(size_t{0});
        if (!n.ok()) {
            // The protocol has no way to cancel a write: end it so the agent frees the stream (the
            // guest file is left short), and stop listening.
            (void)send_frame(FrameType::Eof, call->stream, {}, deadline);
            close_stream(call);
            return std::move(n).error();
        }
        if (*n == 0) break;
        Status st = send_frame(FrameType::Data, call->stream, std::string_view(buf.data(), *n), deadline);
        if (!st.ok()) {
            close_stream(call);
            return send_failure(st.error());
        }
        sent += *n;
    }
    if (!stopped_early) {
        Status st = send_frame(FrameType::Eof, call->stream, {}, deadline);
        if (!st.ok()) {
            close_stream(call);
            return send_failure(st.error());
        }
    }
    for (;;) {
        auto frame = next_frame(call, deadline, "write " + path);
        if (!frame.ok()) {
            close_stream(call);
            return std::move(frame).error();
        }
        if (!is_final(frame->type)) continue;
        close_stream(call);
        json j = TRY(result_json(*frame, "write " + path));
        return result_size(j, sent, "write " + path);
    }
}

// ---- exec ----

namespace {

// Pumps stdin into Stdin frames on a helper thread; the fd form can be cancelled mid-read.
class StdinPump {
public:
    using Send = std::function<Status(FrameType, std::string_view, const std::atomic<bool>* cancel)>;

    StdinPump(const ExecIo& io, Send send) : m_send(std::move(send)) {
        m_cancel.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (io.stdin_data) {
            m_thread = std::thread([this, src = source_from_string(*io.stdin_data)] { pump_source(src); });
        } else if (io.stdin_fd >= 0) {
            m_thread = std::thread([this, fd = io.stdin_fd] { pump_fd(fd); });
        } else if (io.stdin_source) {
            m_thread = std::thread([this, src = io.stdin_source] { pump_source(src); });
        }
    }
    ~StdinPump() { stop(); }

    void stop() {
        m_cancelled = true;
        uint64_t one = 1;
        if (m_cancel) {
            ssize_t ignored = ::write(m_cancel.get(), &one, sizeof one);
            (void)ignored;
        }
        if (m_thread.joinable()) m_thread.join();
    }

private:
    void pump_source(const ByteSource& source) {
        std::string buf(AgentClient::kChunk, '\0');
        while (!m_cancelled) {
            auto n = source(buf.data(), buf.size());
            if (!n.ok() || *n == 0) break;
            if (!m_send(FrameType::Stdin, std::string_view(buf.data(), *n), &m_cancelled).ok()) return;
        }
        if (!m_cancelled) (void)m_send(FrameType::Eof, {}, &m_cancelled);
    }

    void pump_fd(int fd) {
        std::string buf(AgentClient::kChunk, '\0');
        while (!m_cancelled) {
            struct pollfd p[2] = {{fd, POLLIN, 0}, {m_cancel.get(), POLLIN, 0}};
            int r = ::poll(p, 2, -1);
            if (r < 0) {
                if (errno == EINTR) continue;
                break;
            }
            if (p[1].revents) return;
            ssize_t n = ::read(fd, buf.data(), buf.size());
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                break;
            }
            if (n == 0) break;
            if (!m_send(FrameType::Stdin, std::string_view(buf.data(), static_cast<size_t>(n)), &m_cancelled).ok())
                return;
        }
        if (!m_cancelled) (void)m_send(FrameType::Eof, {}, &m_cancelled);
    }

    Send m_send;
    UniqueFd m_cancel;
    std::atomic<bool> m_cancelled{false};
    std::thread m_thread;
};

}  // namespace

Result<proto::ExecResult> AgentClient::exec(proto::ExecRequest request, const ExecIo& io) {
    const bool io_stdin = io.stdin_data.has_value() || io.stdin_fd >= 0 || static_cast<bool>(io.stdin_source);
    // A kept exec may ask for stdin without a source here: send_input() feeds it later.
    request.stdin = io_stdin || (request.keep && request.stdin);
    Millis host_timeout = io.host_timeout;
    if (host_timeout.count() == 0 && request.timeout_ms > 0)
        host_timeout = Millis(request.timeout_ms) + Millis(30000);  // the agent enforces timeout_ms itself
    auto deadline = deadline_after(host_timeout);
    auto call = TRY(open_stream(proto::make_request(proto::op::kExec, proto::to_json(request)), deadline));

    std::optional<StdinPump> pump;
    if (io_stdin)
        pump.emplace(io, [this, stream = call->stream, deadline](FrameType type, std::string_view data,
                                                       const std::atomic<bool>* cancel) {
            // The exec's deadline, and each frame's own (set_frame_send_timeout): a guest that
            // stops reading its stdin cannot hold this thread, nor the exec's caller, forever.
            return send_frame(type, stream, data, deadline, cancel);
        });
    return follow_exec_stream(call, io, deadline, "exec", [&pump] {
        if (pump) pump->stop();
    });
}

Result<proto::ExecResult> AgentClient::attach(int pid, const ExecIo& io) {
    auto deadline = deadline_after(io.host_timeout);
    auto call =
        TRY(open_stream(proto::make_request(proto::op::kAttach, proto::to_json(proto::PidRequest{pid})), deadline));
    if (io.on_started) io.on_started(call->stream, pid);
    return follow_exec_stream(call, io, deadline, "attach", {});
}

Result<proto::ExecResult> AgentClient::follow_exec_stream(const std::shared_ptr<Call>& call, const ExecIo& io,
                                                          Clock::time_point deadline, const char* what,
                                                          const std::function<void()>& on_end) {
    for (;;) {
        auto frame = next_frame(call, deadline, what);
        if (!frame.ok()) {
            if (frame.error().code == ErrorCode::Timeout) (void)send_signal(call->stream, 9);
            close_stream(call);
            return std::move(frame).error();
        }
        switch (frame->type) {
        case FrameType::Stdout:
            if (io.on_stdout) io.on_stdout(frame->payload);
            break;
        case FrameType::Stderr:
            if (io.on_stderr) io.on_stderr(frame->payload);
            break;
        case FrameType::Started:
            if (io.on_started) {
                auto j = proto::parse_json_object(frame->payload);
                int pid = j.ok() && (*j).contains("pid") && (*j)["pid"].is_number_integer() ? (*j)["pid"].get<int>() : 0;
                io.on_started(call->stream, pid);
            }
            break;
        case FrameType::Result:
        case FrameType::Error: {
            close_stream(call);
            if (on_end) on_end();
            json j = TRY(result_json(*frame, what));
            return proto::parse_exec_result(j);
        }
        default:
            break;
        }
    }
}

Status AgentClient::detach(uint32_t stream) {
    Status st = send_frame(FrameType::Detach, stream, {}, deadline_after(Millis(5000)));
    if (!st.ok()) return send_failure(st.error());
    return ok_status();
}

Result<std::vector<proto::ProcessInfo>> AgentClient::processes(Millis timeout) {
    json j = TRY(simple_call(proto::op::kProcs, json::object(), timeout));
    auto list = proto::parse_procs_result(j);
    if (!list.ok()) return protocol_error("procs: " + list.error().message);
    return list;
}

Status AgentClient::signal_process(int pid, int signal, Millis timeout) {
    TRY(simple_call(proto::op::kSignal, proto::to_json(proto::SignalRequest{pid, signal}), timeout));
    return ok_status();
}

Status AgentClient::send_input(int pid, std::string_view data, Millis timeout) {
    auto deadline = deadline_after(timeout);
    do {
        auto piece = data.substr(0, proto::kMaxInputBytes);
        data.remove_prefix(piece.size());
        auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
        if (left.count() <= 0) return make_error(ErrorCode::Timeout, "input: no answer from the agent in time");
        TRY(simple_call(proto::op::kInput, proto::to_json(proto::InputRequest{pid, std::string(piece), false}), left));
    } while (!data.empty());
    return ok_status();
}

Status AgentClient::close_input(int pid, Millis timeout) {
    TRY(simple_call(proto::op::kInput, proto::to_json(proto::InputRequest{pid, {}, true}), timeout));
    return ok_status();
}

Result<ExecOutput> AgentClient::exec_collect(proto::ExecRequest request, std::optional<std::string> stdin_data,
                                             size_t max_output) {
    ExecIo io;
    io.stdin_data = std::move(stdin_data);
    return exec_collect(std::move(request), std::move(io), max_output);
}

Result<ExecOutput> AgentClient::exec_collect(proto::ExecRequest request, ExecIo io, size_t max_output) {
    ExecOutput out;
    io.on_stdout = [&](std::string_view d) {
        out.stdout_data.append(d.substr(0, max_output - std::min(max_output, out.stdout_data.size())));
    };
    io.on_stderr = [&](std::string_view d) {
        out.stderr_data.append(d.substr(0, max_output - std::min(max_output, out.stderr_data.size())));
    };
    out.result = TRY(exec(std::move(request), io));
    return out;
}

}  // namespace kiln::vm
