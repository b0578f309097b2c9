// One client connection of kilnd's API over Boost.Beast/Asio (docs/http.md): headers read with
// limits and a deadline, the route found and the token checked before any body is read, the body
// read up to the route's limit, the handler run on the request pool, the answer written back
// asynchronously. Streams are written from a queue (threaded producers, stream_channel.h) or from
// a timer-driven tail on the event loop; neither holds a pool thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "daemon/auth/authenticator.h"
#include "kilnd/http/router.h"
#include "kilnd/http/token_limiter.h"
#include "kilnd/http/work_pool.h"
#include "kilnd/metrics.h"

namespace kiln::daemon {
class FleetGateway;
}

namespace kiln::daemon::http {

struct ServerLimits {
    size_t max_header_bytes = 64 * 1024;   // request line + headers (431 beyond)
    size_t max_target_bytes = 8 * 1024;    // the request target (414 beyond)
    std::chrono::seconds header_timeout{30};      // a new connection's whole request head
    std::chrono::seconds keep_alive_timeout{10};  // an idle kept-alive connection's next request head
    std::chrono::seconds client_timeout{30};      // each body read and each write of the answer
    size_t stream_queue_bytes = 256 * 1024;       // a threaded stream's queue (back-pressure beyond)
    // Bodies read at once for routes without a token (the webhook, 25 MiB each): nobody's cap
    // bounds them otherwise, so together they stay under 8 x 25 MiB (503 beyond).
    int max_anonymous_bodies = 8;
};

class Connection;

// What every connection shares; lives as long as the server.
class ServerCore {
public:
    ServerCore(boost::asio::io_context& ioc, Router& router, Authenticator& auth, Metrics& metrics, WorkPool& pool,
               TokenLimiter& limiter, ServerLimits limits)
        : ioc(ioc), router(router), auth(auth), metrics(metrics), pool(pool), limiter(limiter), limits(limits) {}

    boost::asio::io_context& ioc;
    Router& router;
    Authenticator& auth;
    Metrics& metrics;
    WorkPool& pool;
    TokenLimiter& limiter;
    const ServerLimits limits;
    std::string public_url;  // kilnd's own origin for the session cookie's checks (ui_session.h)
    FleetGateway* fleet = nullptr;  // forwarding and placement in a fleet; null: none (not owned)
    // Another API's dialect (http_server.h ApiDialect); null: Kiln's bearer token or session
    // cookie, and Kiln's error body.
    std::function<Result<Caller>(const Request&)> authenticate;
    std::function<void(Response&, const Error&)> send_error;

    // Serves a connection the listener accepted.
    void accept(boost::asio::ip::tcp::socket socket);
    // Ends every connection's idle wait and stream; handlers in flight finish and answer.
    void stop_all();
    bool stopping() const;
    bool try_acquire_anonymous_body();
    void release_anonymous_body();

private:
    friend class Connection;
    void add(const std::shared_ptr<Connection>& connection);
    void remove(Connection* connection);

    mutable std::mutex m_mutex;
    bool m_stopping = false;
    int m_anonymous_bodies = 0;
    std::unordered_map<Connection*, std::weak_ptr<Connection>> m_connections;
};

}  // namespace kiln::daemon::http
