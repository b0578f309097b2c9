// Registers envd's Connect calls on the E2B listener's router: each call's request is checked
// (content type, envelope, size, JSON object), its sandbox resolved and leased, its user taken
// from the request, and the handler's answer or error written in Connect's shape.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "kilnd/e2b/connect_codec.h"
#include "kilnd/e2b/envd_routes.h"

namespace kiln::daemon::e2b {

// One envd request, resolved: whose sandbox, as which guest user, and its message.
struct EnvdCall {
    EnvdTarget target;
    std::string user;  // the guest user the call acts as (envd_user.h)
    std::shared_ptr<SandboxLease> lease;
    json message = json::object();
    std::string request_id;
};

// The sandbox, user and lease of `req` (its message left empty), or the error to answer with.
Result<EnvdCall> open_envd_call(EnvdContext& ctx, const http::Request& req);

// A unary call's answer: a message or a Connect error.
struct UnaryReply {
    json message = json::object();
    std::optional<ConnectError> error;
};
UnaryReply reply_error(const Error& error, const EnvdCall& call);
UnaryReply reply_error(ConnectCode code, std::string message);

// The response side of a server-streaming call. Thread-safe: a stream's producer and its
// keep-alive thread both send.
class ConnectStream {
public:
    explicit ConnectStream(http::DataSink& sink) : m_sink(sink) {}
    // Sends one message envelope; false once the client is gone.
    bool send(const json& message);
    // The client went away (seen without writing).
    bool client_gone();

private:
    http::DataSink& m_sink;
    std::mutex m_mutex;
    bool m_gone = false;
};

// While a server stream waits on the agent: a side thread looks at the client every second, sends
// `keepalive` every kKeepAliveEverySeconds (the SDK wants one at least every 50 s), and calls `leave` once the client is gone or a send
// fails, so that the agent call it waits on (a watch, an attached process) can be ended. The
// destructor stops and joins it.
class ClientWatch {
public:
    static constexpr int kKeepAliveEverySeconds = 30;
    ClientWatch(ConnectStream& stream, json keepalive, std::function<void()> leave);
    ~ClientWatch();
    ClientWatch(const ClientWatch&) = delete;
    ClientWatch& operator=(const ClientWatch&) = delete;

private:
    std::mutex m_mutex;
    std::condition_variable m_cv;
    bool m_finished = false;
    std::thread m_thread;
};

using UnaryHandler = std::function<UnaryReply(EnvdCall&)>;
// Runs on a thread of its own for as long as the stream lasts; what it returns ends the stream
// (nothing: a clean end).
using StreamHandler = std::function<std::optional<ConnectError>(EnvdCall&, ConnectStream&)>;

// `procedure` is "/package.Service/Method".
void add_unary_call(http::Router& router, EnvdContext& ctx, const std::string& procedure, UnaryHandler handler);
void add_stream_call(http::Router& router, EnvdContext& ctx, const std::string& procedure, StreamHandler handler);

// A request route's limit: past the message limit, so that a message over it still gets a
// Connect error (resource_exhausted) rather than the server's generic 413.
inline constexpr size_t kConnectRouteMaxBody = 4 * kMaxConnectMessage;

}  // namespace kiln::daemon::e2b
