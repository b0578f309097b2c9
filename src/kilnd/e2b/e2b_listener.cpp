// The E2B listener: Kiln's HttpServer speaking E2B's dialect; see e2b_listener.h.
#include "kilnd/e2b/e2b_listener.h"

#include "kilnd/e2b/e2b_context.h"
#include "kilnd/e2b/e2b_errors.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::e2b {

namespace {

constexpr ScopeSet kAdmin = static_cast<ScopeSet>(Scope::Admin);
constexpr const char* kEnvdPort = "49983";  // the port E2B's SDKs address envd at (E2b-Sandbox-Port)

// E2B's SDKs send the API key as X-API-KEY; it is a Kiln token (either form, token_store.h).
Result<Caller> authenticate_api_key(Authenticator& auth, const http::Request& req) {
    if (!req.has_header("X-API-KEY"))
        return make_error(ErrorCode::Unauthorized,
                          "an X-API-KEY header is required: E2B_API_KEY is a Kiln token (kilnd token create --e2b)");
    auto caller = auth.authenticate(req.get_header_value("X-API-KEY"));
    if (!caller.ok() && caller.error().code == ErrorCode::Unauthorized)
        return make_error(ErrorCode::Unauthorized, "invalid API key: unknown, revoked or not a Kiln token");
    return caller;
}

// Last in the route table, so it answers only what nothing else matched: a request for another
// port of a sandbox (@e2b/code-interpreter's Jupyter server is 49999; envd is 49983) gets a 501
// that says Kiln serves envd only, instead of a 404 the SDK would report as a missing sandbox.
void add_unserved_routes(http::Router& router) {
    auto unserved = [](const http::Request& req, http::Response& res) {
        const std::string port = req.get_header_value("E2b-Sandbox-Port");
        if (!port.empty() && port != kEnvdPort)
            return send_e2b_status(res, 501,
                                   "port " + port.substr(0, 16) + " of a sandbox is not served: Kiln's E2B listener serves "
                                   "envd (port " + kEnvdPort + ") only; @e2b/code-interpreter (Jupyter, 49999) is not "
                                   "supported (docs/e2b.md)");
        send_e2b_status(res, 404, "no E2B call " + req.method + " " + req.path.substr(0, 256) + " (docs/e2b.md lists them)");
    };
    router.Get("/.*", unserved);
    router.Post("/.*", unserved);
    router.Put("/.*", unserved);
    router.Patch("/.*", unserved);
    router.Delete("/.*", unserved);
}

}  // namespace

Result<EnvdTarget> resolve_envd_target(E2bContext& ctx, const http::Request& req) {
    const std::string id = req.get_header_value("E2b-Sandbox-Id");
    if (id.empty()) return make_error(ErrorCode::InvalidArgument, "an E2b-Sandbox-Id header is required on envd requests");
    if (!req.has_header("X-Access-Token"))
        return make_error(ErrorCode::Unauthorized, "an X-Access-Token header (the sandbox's envdAccessToken) is required");
    // The token first: a wrong one learns nothing of whether the sandbox exists.
    if (!http::plausible_sandbox_id(id) || !ctx.access.check(id, req.get_header_value("X-Access-Token")))
        return make_error(ErrorCode::Unauthorized, "invalid access token for sandbox " + id.substr(0, 64));
    // Only the listener's own look-up; the request then runs as the sandbox's owner.
    const Caller listener{0, "e2b-listener", kAdmin, {}};
    auto info = ctx.service.get(listener, id);
    if (!info.ok()) {
        if (info.error().code == ErrorCode::NotFound) return make_error(ErrorCode::NotFound, "sandbox " + id + " not found");
        return info.error();
    }
    if (info->state() != SandboxState::Running)
        return make_error(ErrorCode::SandboxNotRunning, "sandbox " + id + " is " + state_name(info->state()));
    auto owner = ctx.tokens.caller_by_id(info->owner_token_id);
    if (!owner.ok()) return make_error(ErrorCode::Unauthorized, "the API key that created sandbox " + id + " was revoked");
    return EnvdTarget{std::move(*owner), id};
}

Result<std::unique_ptr<HttpServer>> create_e2b_listener(HttpConfig http, const std::string& data_dir,
                                                        SandboxService& service, TokenStore& tokens, Metrics& metrics) {
    auto access = TRY(AccessTokens::open(data_dir));
    // Shared by the dialect's functions, which the server keeps as long as it lives.
    auto ctx = std::make_shared<E2bContext>(E2bContext{service, tokens, std::move(access), EnvdContext{service, {}}});
    ctx->envd.resolve = [raw = ctx.get()](const http::Request& req) { return resolve_envd_target(*raw, req); };
    http.fleet = nullptr;  // sandboxes of other hosts are not reached through this listener (docs/e2b.md)
    ApiDialect dialect;
    dialect.add_routes = [ctx](http::Router& router) {
        add_control_routes(router, *ctx);
        add_envd_routes(router, ctx->envd);
        add_unserved_routes(router);
    };
    dialect.authenticate = [ctx](const http::Request& req) { return authenticate_api_key(ctx->tokens, req); };
    dialect.send_error = [](http::Response& res, const Error& error) { send_e2b_error(res, error); };
    return HttpServer::create(std::move(http), service, tokens, metrics, std::move(dialect));
}

}  // namespace kiln::daemon::e2b
