// One API connection over Beast; see connection.h and docs/http.md.
#include "kilnd/http/connection.h"

#include <array>
#include <limits>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <thread>

#include "base/json_log.h"
#include "kilnd/http/beast_names.h"
#include "kilnd/http/fleet_gateway.h"
#include "kilnd/http/route_context.h"
#include "kilnd/http/stream_channel.h"

namespace kiln::daemon::http {

namespace {
constexpr std::chrono::milliseconds kTailFirstPause{100};
// A quiet log is looked at twice a second at least: a line reaches a follower (the dashboard's
// live log, kiln ci run) well within a second of being written.
constexpr std::chrono::milliseconds kTailMaxPause{500};
// How long an answer given before the body was read keeps draining the unread body, so that the
// client, still sending, reads the answer instead of a reset.
constexpr std::chrono::seconds kLingerTime{2};
constexpr size_t kStreamWriteBytes = 256 * 1024;

std::string to_string(beast::string_view text) { return std::string(text.data(), text.size()); }

// A request the parser refused (as opposed to a socket error, a timeout, or a client that left).
bool is_malformed(const beast::error_code& ec) {
    if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) return false;
    return ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category();
}
}  // namespace

class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(ServerCore& core, tcp::socket socket)
        : m_core(core), m_stream(std::move(socket)), m_buffer(core.limits.max_header_bytes + 64 * 1024),
          m_tail_timer(m_stream.get_executor()) {}
    ~Connection() {
        release_token();
        m_core.remove(this);
    }

    void start() {
        net::dispatch(m_stream.get_executor(), [self = shared_from_this()] { self->read_header(); });
    }

    // From any thread.
    void stop() {
        net::post(m_stream.get_executor(), [self = shared_from_this()] { self->on_stop(); });
    }

private:
    enum class Phase { Head, Body, Handler, Answer, Stream, Closing };

    // ---- request head ----------------------------------------------------------------------
    void read_header() {
        if (m_core.stopping()) return close();
        m_phase = Phase::Head;
        m_parser.emplace();
        m_parser->header_limit(static_cast<std::uint32_t>(m_core.limits.max_header_bytes));
        // No body limit while the head is read (Beast would check Content-Length against its
        // default): the route's limit is set once the route is known, before any body is read.
        m_parser->body_limit(std::numeric_limits<std::uint64_t>::max());
        m_req = std::make_unique<Request>();
        m_res = Response{};
        m_token.reset();
        m_body_unread = false;
        m_stream.expires_after(m_first ? m_core.limits.header_timeout : m_core.limits.keep_alive_timeout);
        bhttp::async_read_header(m_stream, m_buffer, *m_parser,
                                 [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
    }

    void on_header(beast::error_code ec) {
        if (ec == bhttp::error::header_limit) {
            m_keep_alive = false;
            m_body_unread = true;  // whatever else it sends is drained, not answered
            return reject(make_error(ErrorCode::InvalidArgument, "the request's headers are over " +
                                                                     std::to_string(m_core.limits.max_header_bytes) + " bytes"),
                          431);
        }
        if (ec && is_malformed(ec)) {
            m_keep_alive = false;
            m_body_unread = true;
            return reject(make_error(ErrorCode::MalformedBody, "bad request"), 400);
        }
        if (ec) return close();  // timeout, reset, or the client closed between requests

        auto& head = m_parser->get();
        m_keep_alive = head.keep_alive();
        m_body_unread = !m_parser->is_done();
        m_req->method = to_string(head.method_string());
        m_req->request_id = new_request_id();
        m_res.request_id = m_req->request_id;
        std::string_view target(head.target().data(), head.target().size());
        for (const auto& field : head)
            m_req->headers.emplace(to_string(field.name_string()), to_string(field.value()));
        if (target.size() > m_core.limits.max_target_bytes) {
            m_req->path = "(over the limit)";
            return reject(make_error(ErrorCode::InvalidArgument, "the request target is over " +
                                                                     std::to_string(m_core.limits.max_target_bytes) + " bytes"),
                          414);
        }
        m_req->target = std::string(target);
        size_t question = target.find('?');
        m_req->path = percent_decode(target.substr(0, question), false);
        if (question != std::string_view::npos) m_req->params = parse_query(target.substr(question + 1));

        m_route = m_core.router.match(m_req->method, m_req->path, m_req->matches);
        if (!m_route)
            return reject(make_error(ErrorCode::NotFound, "no route " + m_req->method + " " + m_req->path.substr(0, 200)));
        std::optional<Caller> fleet_caller;
        if (FleetGateway::is_fleet_request(*m_req)) {
            // Another host's forward (fleet_gateway.h), or someone posing as one: with any fleet
            // header present, only a valid signature gets further, whatever the route.
            if (!m_core.fleet) return reject(make_error(ErrorCode::Unauthorized, "fleet request refused: this kilnd is in no fleet"));
            auto caller = m_core.fleet->authenticate(*m_req);
            if (!caller.ok()) return reject(caller.error());
            m_req->forwarded = true;
            fleet_caller = std::move(*caller);
        }
        if (m_route->handler.authenticated) {
            // From the headers alone: a request without a valid token costs no body read.
            auto caller = fleet_caller       ? Result<Caller>(*fleet_caller)
                          : m_core.authenticate ? m_core.authenticate(*m_req)
                                                : authenticate_bearer(m_core.auth, *m_req, m_core.public_url);
            if (!caller.ok()) return reject(caller.error());
            if (m_route->handler.admits)
                if (auto admitted = m_route->handler.admits(*caller); !admitted.ok()) return reject(admitted.error());
            if (!m_core.limiter.try_acquire(caller->token_id, TokenLimiter::Kind::Request))
                return reject(make_error(ErrorCode::QuotaExceeded,
                                         "this token already has " + std::to_string(m_core.limiter.cap(TokenLimiter::Kind::Request)) +
                                             " requests in flight (max_requests_per_token)"));
            m_token = caller->token_id;
            m_token_kind = TokenLimiter::Kind::Request;
            m_req->caller = std::move(*caller);
        }
        if (!m_route->handler.authenticated && m_body_unread) {
            if (!m_core.try_acquire_anonymous_body())
                return reject(make_error(ErrorCode::Unavailable, "too many requests without a token are sending bodies at once; try again"));
            m_anonymous_body = true;
        }
        const size_t limit = m_route->max_body;
        if (auto length = m_parser->content_length(); length && *length > limit)
            return reject(body_too_large(limit));
        m_parser->body_limit(limit);
        if (!m_body_unread) return dispatch();
        if (beast::iequals(m_req->get_header_value("Expect"), "100-continue")) {
            static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            m_stream.expires_after(m_core.limits.client_timeout);
            return net::async_write(m_stream, net::buffer(kContinue),
                                    [self = shared_from_this()](beast::error_code wec, size_t) {
                                        if (wec) return self->close();
                                        self->read_body();
                                    });
        }
        read_body();
    }

    Error body_too_large(size_t limit) const {
        return make_error(ErrorCode::BodyTooLarge,
                          "the request body is over " + std::to_string(limit) + " bytes, the limit for this route");
    }

    // ---- request body ----------------------------------------------------------------------
    void read_body() {
        m_phase = Phase::Body;
        // A deadline per read, not per body: a large upload that keeps moving is not cut.
        m_stream.expires_after(m_core.limits.client_timeout);
        bhttp::async_read_some(m_stream, m_buffer, *m_parser,
                               [self = shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
    }

    void on_body(beast::error_code ec) {
        if (ec == bhttp::error::body_limit) return reject(body_too_large(m_route->max_body));
        if (ec && is_malformed(ec)) {
            m_keep_alive = false;
            return reject(make_error(ErrorCode::MalformedBody, "bad request body"), 400);
        }
        if (ec) return close();
        if (!m_parser->is_done()) return read_body();
        m_body_unread = false;
        dispatch();
    }

    // ---- handler ---------------------------------------------------------------------------
    void dispatch() {
        m_phase = Phase::Handler;
        m_stream.expires_never();
        m_req->body = std::move(m_parser->get().body());
        if (m_route->on_event_loop) {
            run_handler();
            return answer();
        }
        m_core.pool.post([self = shared_from_this(), work = net::make_work_guard(m_core.ioc)]() mutable {
            self->run_handler();
            net::post(self->m_stream.get_executor(), [self] { self->answer(); });
            self.reset();  // before the work guard: the server may end once the guard is gone
        });
    }

    void run_handler() {
        try {
            // A sandbox that runs on another host of the fleet, or a create placed there: the
            // owner answers (generic for every sandbox route, so none of them needs to know).
            if (auto signed_body = FleetGateway::check_body(*m_req); !signed_body.ok()) return fail(signed_body.error());
            if (m_core.fleet && m_route->handler.authenticated && m_core.fleet->forward_if_elsewhere(*m_req, m_res)) return;
            m_route->handler.fn(*m_req, m_res);
        } catch (const std::exception& e) {
            m_res = Response{};
            m_res.request_id = m_req->request_id;
            fail(make_error(ErrorCode::Internal, std::string("unexpected exception: ") + e.what()));
        } catch (...) {
            m_res = Response{};
            m_res.request_id = m_req->request_id;
            fail(make_error(ErrorCode::Internal, "unexpected exception"));
        }
    }

    void answer() {
        if (m_res.stream == Response::Stream::None) return write_plain();
        if (m_core.stopping()) {
            drop_stream_provider();
            fail(make_error(ErrorCode::Unavailable, "kilnd is stopping"));
            return write_plain();
        }
        if (m_token) {
            // From a request to a stream: a token at its stream cap gets 429 before anything streams.
            m_core.limiter.release(*m_token, TokenLimiter::Kind::Request);
            m_token_kind = TokenLimiter::Kind::Stream;
            if (!m_core.limiter.try_acquire(*m_token, TokenLimiter::Kind::Stream)) {
                m_token.reset();
                drop_stream_provider();
                fail(make_error(ErrorCode::QuotaExceeded,
                                "this token already has " + std::to_string(m_core.limiter.cap(TokenLimiter::Kind::Stream)) +
                                    " streams open (max_streams_per_token)"));
                return write_plain();
            }
        }
        start_stream();
    }

    // An error answer in the listener's dialect (Kiln's unless the server speaks another).
    void fail(const Error& error) {
        if (m_core.send_error) return m_core.send_error(m_res, error);
        send_error(m_res, error);
    }

    void drop_stream_provider() {
        m_res.stream = Response::Stream::None;
        m_res.chunked_provider = nullptr;
        m_res.sized_provider = nullptr;
        m_res.tail_provider = nullptr;
        m_res.headers.clear();
    }

    template <typename Message>
    void set_common_headers(Message& msg) {
        for (const auto& [name, value] : m_res.headers) msg.insert(name, value);
        if (!m_res.content_type.empty()) msg.set(bhttp::field::content_type, m_res.content_type);
        msg.set("X-Request-Id", m_res.request_id);
    }

    // An answer before the handler: the route, the token, a limit or the request itself.
    void reject(const Error& error, int status_override = 0) {
        m_phase = Phase::Answer;
        m_res = Response{};
        m_res.request_id = m_req ? m_req->request_id : std::string();
        if (m_res.request_id.empty()) m_res.request_id = new_request_id();
        fail(error);
        if (status_override) m_res.status = status_override;
        if (m_body_unread) m_keep_alive = false;
        write_plain();
    }

    void write_plain() {
        m_phase = Phase::Answer;
        auto msg = std::make_shared<bhttp::response<bhttp::string_body>>();
        msg->version(11);
        msg->result(static_cast<unsigned>(m_res.status));
        set_common_headers(*msg);
        m_keep_alive = m_keep_alive && !m_core.stopping();
        msg->keep_alive(m_keep_alive);
        msg->body() = std::move(m_res.body);
        msg->prepare_payload();
        count_answer(m_res.status);
        m_stream.expires_after(m_core.limits.client_timeout);
        bhttp::async_write(m_stream, *msg, [self = shared_from_this(), msg](beast::error_code ec, size_t) {
            self->m_stream.expires_never();
            self->release_token();
            if (ec) return self->close();
            if (self->m_body_unread) return self->linger_close();
            if (!self->m_keep_alive) return self->close();
            self->m_first = false;
            self->read_header();
        });
    }

    // ---- streams ---------------------------------------------------------------------------
    void start_stream() {
        m_phase = Phase::Stream;
        m_keep_alive = false;  // a stream ends its connection: the watch read below owns the socket
        m_res_is_sized = m_res.stream == Response::Stream::Sized;
        count_answer(m_res.status);
        auto head = std::make_shared<bhttp::response<bhttp::empty_body>>();
        head->version(11);
        head->result(static_cast<unsigned>(m_res.status));
        set_common_headers(*head);
        head->keep_alive(false);
        if (m_res.stream == Response::Stream::Sized) head->content_length(m_res.sized_length);
        else head->chunked(true);
        auto serializer = std::make_shared<bhttp::response_serializer<bhttp::empty_body>>(*head);
        m_stream.expires_after(m_core.limits.client_timeout);
        bhttp::async_write_header(m_stream, *serializer,
                                  [self = shared_from_this(), head, serializer](beast::error_code ec, size_t) {
                                      self->m_stream.expires_never();
                                      if (ec) return self->end_stream(false);
                                      self->watch_for_close();
                                      if (self->m_res.stream == Response::Stream::Tail) return self->tail_tick();
                                      self->start_producer();
                                  });
    }

    // A client that leaves is seen here even while its stream is silent (a log nobody appends to,
    // a command that prints nothing). Anything it sends after its request is dropped.
    void watch_for_close() {
        m_stream.async_read_some(net::buffer(m_scratch), [self = shared_from_this()](beast::error_code ec, size_t) {
            if (self->m_phase != Phase::Stream) return;
            if (ec) return self->end_stream(false);
            self->watch_for_close();
        });
    }

    // Threaded producers (exec streams, file reads, tars, artifacts): their own thread, so that
    // one blocked on the agent holds no pool thread; their bytes reach the socket through the
    // channel's queue.
    void start_producer() {
        m_channel = std::make_shared<StreamChannel>(m_core.limits.stream_queue_bytes);
        std::weak_ptr<Connection> weak = shared_from_this();
        m_channel->set_wake([weak, executor = m_stream.get_executor()] {
            net::post(executor, [weak] {
                if (auto self = weak.lock()) self->pump_channel();
            });
        });
        std::thread([channel = m_channel, res = std::make_shared<Response>(std::move(m_res)),
                     work = net::make_work_guard(m_core.ioc), request_id = m_req->request_id]() mutable {
            size_t offset = 0;
            bool done = false;
            DataSink sink;
            sink.write = [&](const char* data, size_t size) {
                if (!channel->write(data, size)) return false;
                offset += size;
                return true;
            };
            sink.done = [&] { done = true; };
            sink.is_writable = [&] { return !channel->gone(); };
            try {
                if (res->stream == Response::Stream::Sized) {
                    while (offset < res->sized_length && !channel->gone())
                        if (!res->sized_provider(offset, res->sized_length - offset, sink)) break;
                    done = offset == res->sized_length;
                } else {
                    while (!done && !channel->gone())
                        if (!res->chunked_provider(offset, sink)) break;
                }
            } catch (const std::exception& e) {
                log::error("stream failed", {{"request_id", request_id}, {"error", e.what()}});
                done = false;
            }
            channel->finish(done);
            res.reset();  // the provider's captures (a sandbox lease) go before the work guard
        }).detach();
    }

    void pump_channel() {
        if (m_phase != Phase::Stream || !m_channel || m_writing) return;
        auto taken = m_channel->take(kStreamWriteBytes);
        if (!taken.data.empty())
            return write_stream_data(std::move(taken.data), [this] { pump_channel(); });
        if (taken.finished) finish_stream(taken.complete);
    }

    // The tail of a file on the event loop: no thread, a timer between looks.
    void tail_tick() {
        if (m_phase != Phase::Stream) return;
        std::string pending;
        bool done = false;
        DataSink sink;
        sink.write = [&](const char* data, size_t size) {
            pending.append(data, size);
            return true;
        };
        sink.done = [&] { done = true; };
        sink.is_writable = [] { return true; };
        bool ok = false;
        try {
            ok = m_res.tail_provider(sink);
        } catch (const std::exception& e) {
            log::error("stream failed", {{"request_id", m_req->request_id}, {"error", e.what()}});
        }
        if (!ok) return end_stream(false);
        if (!pending.empty()) {
            return write_stream_data(std::move(pending), [this, done] {
                if (done) return finish_stream(true);
                m_tail_pause = kTailFirstPause;
                tail_tick();
            });
        }
        if (done) return finish_stream(true);
        m_tail_timer.expires_after(m_tail_pause);
        m_tail_pause = std::min(m_tail_pause * 2, kTailMaxPause);
        m_tail_timer.async_wait([self = shared_from_this()](beast::error_code ec) {
            if (!ec) self->tail_tick();
        });
    }

    // `next` runs on the strand once the bytes are written (the connection is alive then).
    void write_stream_data(std::string data, std::function<void()> next) {
        m_writing = true;
        auto buffer = std::make_shared<std::string>(std::move(data));
        m_bytes_streamed += buffer->size();
        auto on_written = [self = shared_from_this(), buffer, next = std::move(next)](beast::error_code ec, size_t) {
            self->m_writing = false;
            self->m_stream.expires_never();
            if (self->m_phase != Phase::Stream) return;
            if (ec) return self->end_stream(false);
            next();
        };
        // A client that reads nothing for client_timeout is dropped.
        m_stream.expires_after(m_core.limits.client_timeout);
        if (m_res_is_sized) net::async_write(m_stream, net::buffer(*buffer), std::move(on_written));
        else net::async_write(m_stream, bhttp::make_chunk(net::buffer(*buffer)), std::move(on_written));
    }

    void finish_stream(bool complete) {
        if (!complete || m_res_is_sized) return end_stream(complete);
        m_writing = true;
        m_stream.expires_after(m_core.limits.client_timeout);
        net::async_write(m_stream, bhttp::make_chunk_last(), [self = shared_from_this()](beast::error_code ec, size_t) {
            self->m_writing = false;
            self->m_stream.expires_never();
            if (self->m_phase != Phase::Stream) return;
            self->end_stream(!ec);
        });
    }

    // The stream is over: complete, failed, or its client gone. The connection closes either way
    // (a stream that ends without its last chunk is how the client learns it failed).
    void end_stream(bool complete) {
        if (m_phase != Phase::Stream) return;
        m_phase = Phase::Closing;
        if (m_channel) m_channel->mark_gone();
        m_tail_timer.cancel();
        m_res.tail_provider = nullptr;
        if (!complete && m_req)
            log::debug("stream ended early", {{"request_id", m_req->request_id}, {"bytes", m_bytes_streamed}});
        release_token();
        close();
    }

    // ---- ends ------------------------------------------------------------------------------
    // Counted and logged as the answer starts, so that a client that reads it and asks /metrics
    // at once sees it counted.
    void count_answer(int status) {
        m_core.metrics.count_http_request(status);
        // The path only: query strings may carry file paths of a user's job, and headers the token.
        if (m_req)
            log::debug("request", {{"method", m_req->method}, {"path", m_req->path.substr(0, 256)}, {"status", status},
                                   {"request_id", m_req->request_id}});
    }

    void release_token() {
        if (m_token) m_core.limiter.release(*m_token, m_token_kind);
        m_token.reset();
        if (m_anonymous_body) m_core.release_anonymous_body();
        m_anonymous_body = false;
    }

    void on_stop() {
        switch (m_phase) {
        case Phase::Head: return close();
        case Phase::Stream: return end_stream(false);
        case Phase::Body:
        case Phase::Handler:
        case Phase::Answer:
        case Phase::Closing: return;  // finishes, then closes (write_plain sees stopping())
        }
    }

    void close() {
        m_phase = Phase::Closing;
        m_tail_timer.cancel();
        beast::error_code ignored;
        m_stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        m_stream.close();
    }

    // The answer went out before the body was read: stop sending, read and drop what the client
    // still sends for a moment, then close. Closing at once with unread bytes would send a reset,
    // which can destroy the answer before the client reads it.
    void linger_close() {
        m_phase = Phase::Closing;
        beast::error_code ignored;
        m_stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        m_stream.expires_after(kLingerTime);
        drain();
    }
    void drain() {
        m_stream.async_read_some(net::buffer(m_scratch), [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return self->close();
            self->drain();
        });
    }

    friend class ServerCore;
    ServerCore& m_core;
    beast::tcp_stream m_stream;
    beast::flat_buffer m_buffer;
    std::optional<bhttp::request_parser<bhttp::string_body>> m_parser;
    std::unique_ptr<Request> m_req;
    Response m_res;
    const Route* m_route = nullptr;
    Phase m_phase = Phase::Head;
    bool m_first = true;
    bool m_keep_alive = false;
    bool m_body_unread = false;
    std::optional<int64_t> m_token;
    bool m_anonymous_body = false;  // holds one of ServerLimits::max_anonymous_bodies
    TokenLimiter::Kind m_token_kind = TokenLimiter::Kind::Request;
    // Streams.
    std::shared_ptr<StreamChannel> m_channel;
    net::steady_timer m_tail_timer;
    std::chrono::milliseconds m_tail_pause = kTailFirstPause;
    bool m_writing = false;
    bool m_res_is_sized = false;
    uint64_t m_bytes_streamed = 0;
    std::array<char, 16 * 1024> m_scratch{};
};

void ServerCore::accept(tcp::socket socket) {
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto connection = std::make_shared<Connection>(*this, std::move(socket));
    add(connection);
    connection->start();
}

void ServerCore::add(const std::shared_ptr<Connection>& connection) {
    std::lock_guard lock(m_mutex);
    m_connections.emplace(connection.get(), connection);
}

void ServerCore::remove(Connection* connection) {
    std::lock_guard lock(m_mutex);
    m_connections.erase(connection);
}

bool ServerCore::stopping() const {
    std::lock_guard lock(m_mutex);
    return m_stopping;
}

bool ServerCore::try_acquire_anonymous_body() {
    std::lock_guard lock(m_mutex);
    if (m_anonymous_bodies >= limits.max_anonymous_bodies) return false;
    ++m_anonymous_bodies;
    return true;
}

void ServerCore::release_anonymous_body() {
    std::lock_guard lock(m_mutex);
    if (m_anonymous_bodies > 0) --m_anonymous_bodies;
}

void ServerCore::stop_all() {
    std::vector<std::shared_ptr<Connection>> live;
    {
        std::lock_guard lock(m_mutex);
        m_stopping = true;
        for (auto& [ptr, weak] : m_connections)
            if (auto c = weak.lock()) live.push_back(std::move(c));
    }
    for (auto& c : live) c->stop();
}

}  // namespace kiln::daemon::http
