// HttpServer over cpp-httplib: auth, error mapping, limits, logging, and the route groups.
#include "kilnd/http/http_server.h"

#include <strings.h>

#include <chrono>
#include <regex>

#include "base/json_log.h"
#include "daemon/api_error.h"
#include "kilnd/http/route_context.h"
#include "proto/messages.h"
#include "vm/jail/jail_settings.h"

namespace kiln::daemon {

namespace http {

Error api_error(const Error& e) {
    ApiError api = to_api_error(e);
    return make_error(api.code, std::move(api.message));
}

void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(dump(body) + "\n", "application/json");
}

void send_error(httplib::Response& res, const Error& error) {
    ApiError api = to_api_error(error);
    send_json(res, api.http_status, render_error(make_error(api.code, std::move(api.message))));
}

Status check_body_size(const httplib::Request& req, size_t limit) {
    if (req.body.size() > limit)
        return make_error(ErrorCode::BodyTooLarge, "the request body is " + std::to_string(req.body.size()) +
                                                " bytes; the limit for this route is " + std::to_string(limit));
    return ok_status();
}

httplib::Server::Handler authed(RouteContext& ctx, AuthedHandler handler) {
    return [&ctx, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
        std::string header = req.get_header_value("Authorization");
        static constexpr std::string_view kBearer = "Bearer ";
        // The scheme is case-insensitive (RFC 7235); the token is not.
        if (header.size() <= kBearer.size() || strncasecmp(header.c_str(), kBearer.data(), kBearer.size()) != 0) {
            send_error(res, make_error(ErrorCode::Unauthorized, "an Authorization: Bearer <token> header is required"));
            return;
        }
        auto caller = ctx.auth.authenticate(std::string_view(header).substr(kBearer.size()));
        if (!caller.ok()) {
            send_error(res, caller.error());
            return;
        }
        handler(*caller, req, res);
    };
}

httplib::Server::Handler authed(RouteContext& ctx, ScopeSet any_of, AuthedHandler handler) {
    return authed(ctx, [any_of, handler = std::move(handler)](const Caller& caller, const httplib::Request& req,
                                                              httplib::Response& res) {
        if ((caller.scopes & any_of) == 0 && !caller.is_admin()) {
            auto names = scope_names(any_of);
            std::string list;
            for (size_t i = 0; i < names.size(); ++i) list += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
            return send_error(res, make_error(ErrorCode::Forbidden, "this call needs the " + list + " scope; the token has " +
                                                                        (caller.scopes ? scope_list(caller.scopes) : "none")));
        }
        handler(caller, req, res);
    });
}

}  // namespace http

namespace {

using namespace http;

class HttpServerImpl final : public HttpServer {
public:
    HttpServerImpl(HttpConfig config, SandboxService& service, Authenticator& auth, Metrics& metrics)
        : m_ctx{std::move(config), service, auth, metrics} {
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

        const int workers = m_ctx.config.worker_threads > 0 ? m_ctx.config.worker_threads : 32;
        m_server.new_task_queue = [workers] { return new httplib::ThreadPool(static_cast<size_t>(workers)); };
        m_server.set_payload_max_length(std::max(m_ctx.config.max_upload_body, m_ctx.config.max_json_body));
        m_server.set_read_timeout(m_ctx.config.client_timeout_seconds, 0);
        m_server.set_write_timeout(m_ctx.config.client_timeout_seconds, 0);
        m_server.set_keep_alive_timeout(std::min(m_ctx.config.client_timeout_seconds, 10));
        m_server.set_tcp_nodelay(true);

        m_server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "unexpected failure";
            try {
                if (ep) std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            log::error("request failed", {{"error", what}});
            send_json(res, 500, render_error(make_error(ErrorCode::Internal, what)));
        });
        // Statuses httplib sets itself (404 for no route, 413 over the payload limit, 400 for a
        // bad request line) get the API's JSON error body too.
        m_server.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
            if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
            Error e = res.status == 404   ? make_error(ErrorCode::NotFound, "no route " + req.method + " " + req.path)
                      : res.status == 413 ? make_error(ErrorCode::InvalidArgument, "the request body is too large")
                                          : make_error(ErrorCode::InvalidArgument, "bad request");
            res.set_content(dump(render_error(e)) + "\n", "application/json");
            return httplib::Server::HandlerResponse::Handled;
        }));
        m_server.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
            m_ctx.metrics.count_http_request(res.status);
            // The path only: query strings may carry file paths of a user's job, and headers the token.
            log::debug("request", {{"method", req.method}, {"path", req.path}, {"status", res.status}});
        });

        m_server.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
            // Said on every call, not once: an operator who set allow_unconfined must keep seeing it.
            auto confinement = vm::jail::confinement();
            json body{{"status", "ok"}, {"version", m_ctx.config.version}, {"accel", m_ctx.config.accel},
                      {"confinement", {{"jailed", confinement.jailed}, {"seccomp", confinement.seccomp},
                                       {"vms_allowed", confinement.allowed}}}};
            if (!confinement.problem.empty()) {
                body["status"] = confinement.allowed ? "unconfined" : "degraded";
                body["confinement"]["problem"] = confinement.problem;
            }
            send_json(res, 200, body);
        });
        m_server.Get("/metrics", authed(m_ctx, [this](const Caller&, const httplib::Request&, httplib::Response& res) {
                         res.status = 200;
                         res.set_content(m_ctx.metrics.render(m_ctx.service.count_by_state()),
                                         "text/plain; version=0.0.4");
                     }));
        add_sandbox_routes(m_server, m_ctx);
        add_exec_routes(m_server, m_ctx);
        add_file_routes(m_server, m_ctx);
        add_template_routes(m_server, m_ctx);
        add_github_routes(m_server, m_ctx);
        add_job_routes(m_server, m_ctx);
        add_token_routes(m_server, m_ctx);
        return ok_status();
    }

    Status bind() override {
        if (m_port == 0) {
            int port = m_server.bind_to_any_port(m_host.c_str());
            if (port < 0) return make_error(ErrorCode::Internal, "cannot listen on " + m_host + " (any port)");
            m_bound_port = port;
        } else {
            if (!m_server.bind_to_port(m_host.c_str(), m_port))
                return make_error(ErrorCode::Internal, "cannot listen on " + m_ctx.config.listen +
                                                        " (in use by another process, or not an address of this host)");
            m_bound_port = m_port;
        }
        return ok_status();
    }

    int port() const override { return m_bound_port; }

    Status serve() override {
        if (!m_server.listen_after_bind()) {
            if (m_stopped) return ok_status();
            return make_error(ErrorCode::Internal, "the HTTP server stopped unexpectedly");
        }
        return ok_status();
    }

    void stop() override {
        m_stopped = true;
        m_server.stop();
    }

private:
    RouteContext m_ctx;
    httplib::Server m_server;
    std::string m_host;
    int m_port = 0;
    int m_bound_port = 0;
    std::atomic<bool> m_stopped{false};
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::create(HttpConfig config, SandboxService& service, Authenticator& auth,
                                                       Metrics& metrics) {
    auto server = std::make_unique<HttpServerImpl>(std::move(config), service, auth, metrics);
    TRY(server->setup());
    return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace kiln::daemon
