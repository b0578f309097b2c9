// HttpServer over Boost.Beast/Asio: the listener, the event loop's threads, the request pool,
// auth and error mapping, and the route groups. One connection's work is connection.cpp.
#include "kilnd/http/http_server.h"

#include "daemon/fleet/host_registry.h"

#include <strings.h>

#include <atomic>
#include <optional>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <thread>

#include "base/json_log.h"
#include "base/random.h"
#include "daemon/api_error.h"
#include "kilnd/http/connection.h"
#include "kilnd/http/route_context.h"
#include "kilnd/http/ui_session.h"
#include "vm/jail/jail_settings.h"

namespace kiln::daemon {

namespace http {

namespace {
std::string public_message(const std::string& request_id) { return "internal error (request " + request_id + ")"; }
}  // namespace

std::string new_request_id() {
    auto hex = random_hex(8);
    if (hex.ok()) return *hex;
    static std::atomic<uint64_t> counter{0};
    return "n" + std::to_string(++counter);
}

Error api_error(const Error& e, const std::string& request_id) {
    ApiError api = to_api_error(e);
    if (api.http_status >= 500 && api.code == ErrorCode::Internal) {
        log::error("internal error", {{"request_id", request_id}, {"error", e.to_string()}});
        return make_error(api.code, public_message(request_id));
    }
    return make_error(api.code, without_host_logs(api.message));
}

void send_json(Response& res, int status, const json& body) {
    res.status = status;
    if (status == 500) {
        // Whoever built this body (a route, the webhook), its message may hold e.what(), a QEMU
        // log tail or a host path: the log keeps it, the client gets the request id.
        log::error("internal error", {{"request_id", res.request_id}, {"answer", body}});
        json shown{{"error", {{"code", "internal"}, {"message", public_message(res.request_id)}}}};
        res.set_content(dump(shown) + "\n", "application/json");
        return;
    }
    res.set_content(dump(body) + "\n", "application/json");
}

void send_error(Response& res, const Error& error) {
    ApiError api = to_api_error(error);
    if (api.http_status == 500) {
        log::error("internal error", {{"request_id", res.request_id}, {"error", error.to_string()}});
        res.status = 500;
        res.set_content(dump(render_error(make_error(ErrorCode::Internal, public_message(res.request_id)))) + "\n",
                        "application/json");
        return;
    }
    std::string shown = without_host_logs(api.message);
    if (shown != api.message)
        log::warn("error details kept from the client", {{"request_id", res.request_id}, {"error", error.to_string()}});
    send_json(res, api.http_status, render_error(make_error(api.code, std::move(shown))));
}

Status check_body_size(const Request& req, size_t limit) {
    if (req.body.size() > limit)
        return make_error(ErrorCode::BodyTooLarge, "the request body is " + std::to_string(req.body.size()) +
                                                " bytes; the limit for this route is " + std::to_string(limit));
    return ok_status();
}

Result<Caller> authenticate_bearer(Authenticator& auth, const Request& req, const std::string& public_url) {
    if (!req.has_header("Authorization") && cookie_value(req, kSessionCookie))
        return authenticate_cookie(auth, req, public_url);
    std::string header = req.get_header_value("Authorization");
    static constexpr std::string_view kBearer = "Bearer ";
    // The scheme is case-insensitive (RFC 7235); the token is not.
    if (header.size() <= kBearer.size() || strncasecmp(header.c_str(), kBearer.data(), kBearer.size()) != 0)
        return make_error(ErrorCode::Unauthorized, "an Authorization: Bearer <token> header is required");
    return auth.authenticate(std::string_view(header).substr(kBearer.size()));
}

Handler authed(RouteContext&, AuthedHandler handler) {
    return Handler(
        [handler = std::move(handler)](const Request& req, Response& res) {
            // The server authenticated the request before it read the body (connection.cpp).
            if (!req.caller) return send_error(res, make_error(ErrorCode::Unauthorized, "no token"));
            handler(*req.caller, req, res);
        },
        true);
}

namespace {
Status check_scopes(const Caller& caller, ScopeSet any_of) {
    if ((caller.scopes & any_of) != 0 || caller.is_admin()) return ok_status();
    auto names = scope_names(any_of);
    std::string list;
    for (size_t i = 0; i < names.size(); ++i) list += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
    return make_error(ErrorCode::Forbidden, "this call needs the " + list + " scope; the token has " +
                                                (caller.scopes ? scope_list(caller.scopes) : "none"));
}
}  // namespace

Handler authed(RouteContext& ctx, ScopeSet any_of, AuthedHandler handler) {
    Handler h = authed(ctx, [any_of, handler = std::move(handler)](const Caller& caller, const Request& req, Response& res) {
        if (auto st = check_scopes(caller, any_of); !st.ok()) return send_error(res, st.error());
        handler(caller, req, res);
    });
    // The same check before the body is read: a call outside the token's scopes costs no body.
    h.admits = [any_of](const Caller& caller) { return check_scopes(caller, any_of); };
    return h;
}

}  // namespace http

namespace {

using namespace http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// The event loop's threads: they parse, route, authenticate, write answers and run log tails;
// two keep /healthz answering while one is busy.
constexpr int kEventLoopThreads = 2;

class HttpServerImpl final : public HttpServer {
public:
    HttpServerImpl(HttpConfig config, SandboxService& service, Authenticator& auth, Metrics& metrics,
                   std::optional<ApiDialect> dialect)
        : m_ctx{std::move(config), service, auth, metrics},
          m_dialect(std::move(dialect)),
          m_router(m_ctx.config.max_json_body),
          m_limiter(m_ctx.config.max_requests_per_token, m_ctx.config.max_streams_per_token),
          m_acceptor(net::make_strand(m_ioc)) {
        m_ctx.jobs = m_ctx.config.jobs;
    }

    Status setup() {
        auto colon = m_ctx.config.listen.rfind(':');
        if (colon == std::string::npos) return make_error(ErrorCode::InvalidArgument, "listen address must be host:port");
        m_host = m_ctx.config.listen.substr(0, colon);
        try {
            int port = std::stoi(m_ctx.config.listen.substr(colon + 1));
            if (port < 0 || port > 65535) throw std::out_of_range("port");
            m_port = port;
        } catch (const std::exception&) {
            return make_error(ErrorCode::InvalidArgument, "listen address '" + m_ctx.config.listen + "' has no valid port");
        }
        if (m_host.size() > 2 && m_host.front() == '[' && m_host.back() == ']') m_host = m_host.substr(1, m_host.size() - 2);
        if (m_dialect) {
            m_dialect->add_routes(m_router);
            return ok_status();
        }

        // Cheap and never blocking: answered on the event loop, so a full request pool does not
        // make kilnd look dead.
        m_router.GetOnEventLoop("/healthz", [this](const Request&, Response& res) {
            // Said on every call, not once: an operator who set allow_unconfined must keep seeing it.
            auto confinement = vm::jail::confinement();
            json body{{"status", "ok"}, {"version", m_ctx.config.version}, {"accel", m_ctx.config.accel},
                      {"confinement", {{"jailed", confinement.jailed}, {"seccomp", confinement.seccomp},
                                       {"vms_allowed", confinement.allowed}}}};
            if (!confinement.problem.empty()) {
                body["status"] = confinement.allowed ? "unconfined" : "degraded";
                body["confinement"]["problem"] = confinement.problem;
            }
            // One statvfs: what the free-space guard decides new work by (docs/kilnd.md, "Disk").
            if (m_ctx.config.disk) {
                if (auto d = m_ctx.config.disk->read(); d.ok()) {
                    body["disk"] = {{"free_bytes", d->space.free_bytes}, {"total_bytes", d->space.total_bytes},
                                    {"min_free_bytes", d->required_free_bytes}, {"ok", d->ok}};
                    if (!d->ok && body["status"] == "ok") body["status"] = "degraded";
                }
            }
            send_json(res, 200, body);
        });
        m_router.Get("/metrics", authed(m_ctx, [this](const Caller&, const Request&, Response& res) {
                         res.status = 200;
                         std::string text = m_ctx.metrics.render(m_ctx.service.count_by_state());
                         if (m_ctx.config.hosts) {
                             // The fleet as this host sees it; a store that does not answer leaves it out.
                             if (auto hosts = m_ctx.config.hosts->hosts(); hosts.ok())
                                 text += render_host_metrics(*hosts, m_ctx.config.hosts->name());
                         }
                         res.set_content(text, "text/plain; version=0.0.4");
                     }));
        add_sandbox_routes(m_router, m_ctx);
        add_exec_routes(m_router, m_ctx);
        add_file_routes(m_router, m_ctx);
        add_template_routes(m_router, m_ctx);
        add_github_routes(m_router, m_ctx);
        add_job_routes(m_router, m_ctx);
        add_pipeline_routes(m_router, m_ctx);
        add_token_routes(m_router, m_ctx);
        add_job_test_routes(m_router, m_ctx);
        add_stats_routes(m_router, m_ctx);
        add_bake_routes(m_router, m_ctx);
        add_host_routes(m_router, m_ctx);
        add_fleet_routes(m_router, m_ctx);
        add_ui_routes(m_router, m_ctx);
        return ok_status();
    }

    Status bind() override {
        boost::system::error_code ec;
        tcp::resolver resolver(m_ioc);
        auto endpoints = resolver.resolve(m_host, std::to_string(m_port), tcp::resolver::passive, ec);
        if (ec || endpoints.empty())
            return make_error(ErrorCode::Internal, "cannot listen on " + m_ctx.config.listen + ": not an address (" + ec.message() + ")");
        std::string last_error;
        for (const auto& entry : endpoints) {
            tcp::endpoint endpoint = entry.endpoint();
            m_acceptor.open(endpoint.protocol(), ec);
            if (ec) {
                last_error = ec.message();
                continue;
            }
            m_acceptor.set_option(net::socket_base::reuse_address(true), ec);
            if (endpoint.address().is_v6()) m_acceptor.set_option(net::ip::v6_only(true), ec);
            m_acceptor.bind(endpoint, ec);
            if (!ec) m_acceptor.listen(net::socket_base::max_listen_connections, ec);
            if (!ec) {
                m_bound_port = m_acceptor.local_endpoint().port();
                return ok_status();
            }
            last_error = ec.message();
            boost::system::error_code ignored;
            m_acceptor.close(ignored);
        }
        return make_error(ErrorCode::Internal, "cannot listen on " + m_ctx.config.listen + " (" + last_error +
                                                   ": in use by another process, or not an address of this host)");
    }

    int port() const override { return m_bound_port; }

    Status serve() override {
        if (m_stopped) return ok_status();
        const int workers = m_ctx.config.worker_threads > 0 ? m_ctx.config.worker_threads : 32;
        WorkPool pool(workers);
        ServerLimits limits;
        limits.header_timeout = std::chrono::seconds(m_ctx.config.client_timeout_seconds);
        limits.keep_alive_timeout = std::chrono::seconds(std::min(m_ctx.config.client_timeout_seconds, 10));
        limits.client_timeout = std::chrono::seconds(m_ctx.config.client_timeout_seconds);
        ServerCore core(m_ioc, m_router, m_ctx.auth, m_ctx.metrics, pool, m_limiter, limits);
        core.public_url = m_ctx.config.public_url;
        if (m_dialect) {
            core.authenticate = m_dialect->authenticate;
            core.send_error = m_dialect->send_error;
        } else {
            core.fleet = m_ctx.config.fleet;
        }
        {
            std::lock_guard lock(m_mutex);
            if (m_stopped) return ok_status();
            m_core = &core;
        }
        accept_next();
        std::vector<std::thread> threads;
        for (int i = 1; i < kEventLoopThreads; ++i) threads.emplace_back([this] { m_ioc.run(); });
        m_ioc.run();  // returns once stopped and every connection, handler and stream has ended
        for (auto& t : threads) t.join();
        {
            std::lock_guard lock(m_mutex);
            m_core = nullptr;
        }
        return ok_status();
    }

    void stop() override {
        std::lock_guard lock(m_mutex);
        if (m_stopped) return;
        m_stopped = true;
        if (!m_core) return;
        // On the acceptor's strand: its accept handler runs there too.
        net::post(m_acceptor.get_executor(), [this, core = m_core] {
            boost::system::error_code ignored;
            m_acceptor.close(ignored);
            m_retry_timer.reset();
            core->stop_all();
        });
    }

private:
    void accept_next() {
        // Each connection gets its own strand: its handlers never run at once.
        m_acceptor.async_accept(net::make_strand(m_ioc), [this](boost::system::error_code ec, tcp::socket socket) {
            if (ec == net::error::operation_aborted || !m_acceptor.is_open()) return;
            if (ec) {
                // Out of fds (or a transient error): try again shortly rather than spin.
                log::warn("http accept", {{"error", ec.message()}});
                m_retry_timer = std::make_unique<net::steady_timer>(m_acceptor.get_executor(), std::chrono::milliseconds(100));
                m_retry_timer->async_wait([this](boost::system::error_code wec) {
                    if (!wec && m_acceptor.is_open()) accept_next();
                });
                return;
            }
            m_core->accept(std::move(socket));
            accept_next();
        });
    }

    RouteContext m_ctx;
    std::optional<ApiDialect> m_dialect;  // none: Kiln's own API
    Router m_router;
    TokenLimiter m_limiter;
    net::io_context m_ioc;
    tcp::acceptor m_acceptor;
    std::unique_ptr<net::steady_timer> m_retry_timer;
    std::mutex m_mutex;
    ServerCore* m_core = nullptr;
    std::string m_host;
    int m_port = 0;
    int m_bound_port = 0;
    bool m_stopped = false;
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::create(HttpConfig config, SandboxService& service, Authenticator& auth,
                                                       Metrics& metrics) {
    auto server = std::make_unique<HttpServerImpl>(std::move(config), service, auth, metrics, std::nullopt);
    TRY(server->setup());
    return std::unique_ptr<HttpServer>(std::move(server));
}

Result<std::unique_ptr<HttpServer>> HttpServer::create(HttpConfig config, SandboxService& service, Authenticator& auth,
                                                       Metrics& metrics, ApiDialect dialect) {
    if (!dialect.add_routes || !dialect.authenticate || !dialect.send_error)
        return make_error(ErrorCode::Internal, "an API dialect needs its routes, authentication and error shape");
    auto server = std::make_unique<HttpServerImpl>(std::move(config), service, auth, metrics, std::move(dialect));
    TRY(server->setup());
    return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace kiln::daemon
