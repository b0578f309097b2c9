// What every route handler of kilnd's HTTP layer shares: the service, auth, metrics, limits and
// the helpers that turn Results into responses. Internal to src/kilnd/http.
#pragma once

#include <functional>
#include <string>

#include "base/result.h"
#include "daemon/auth/authenticator.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "kilnd/http/http_message.h"
#include "kilnd/http/http_server.h"
#include "kilnd/http/json_render.h"
#include "kilnd/http/router.h"
#include "kilnd/metrics.h"

namespace kiln::daemon::http {

// The error as the API shows it (daemon/api_error.h): agent and VM codes become the API's codes.
// A 500's message is only "internal error (request <id>)": the details (e.what(), QEMU's log,
// host paths) go to kilnd's log under that id, never to the client.
Error api_error(const Error& error, const std::string& request_id);

// A 500 body is replaced by the public one (the original is logged under res.request_id).
void send_json(Response& res, int status, const json& body);
void send_error(Response& res, const Error& error);

struct RouteContext {
    HttpConfig config;
    SandboxService& service;
    Authenticator& auth;
    Metrics& metrics;
    ci::JobService* jobs = nullptr;  // /v1/jobs (not owned); null: 503 (from HttpConfig::jobs)
};

using AuthedHandler = std::function<void(const Caller&, const Request&, Response&)>;

// The route groups, each in its own file.
void add_sandbox_routes(Router& server, RouteContext& ctx);
void add_exec_routes(Router& server, RouteContext& ctx);
void add_file_routes(Router& server, RouteContext& ctx);
void add_template_routes(Router& server, RouteContext& ctx);
void add_github_routes(Router& server, RouteContext& ctx);  // POST /v1/ci/github
void add_job_routes(Router& server, RouteContext& ctx);     // /v1/jobs (job_routes.cpp)
void add_pipeline_routes(Router& server, RouteContext& ctx);  // /v1/pipelines (pipeline_routes.cpp)
void add_token_routes(Router& server, RouteContext& ctx);   // GET /v1/token (token_routes.cpp)
void add_job_test_routes(Router& server, RouteContext& ctx);  // GET /v1/jobs/{id}/tests (job_test_routes.cpp)
void add_stats_routes(Router& server, RouteContext& ctx);
void add_bake_routes(Router& server, RouteContext& ctx);    // GET /v1/bakes (bake_routes.cpp)   // GET /v1/stats/creates (stats_routes.cpp)
void add_host_routes(Router& server, RouteContext& ctx);    // /v1/hosts (host_routes.cpp)
void add_ui_routes(Router& server, RouteContext& ctx);      // /ui/: the dashboard (ui_routes.cpp)
void add_fleet_routes(Router& server, RouteContext& ctx);   // /v1/internal/: between fleet hosts (fleet_routes.cpp)

// A handler that takes a bearer token: the server authenticates it from the headers before it
// reads the body (401 JSON without a valid one) and counts it against max_requests_per_token.
Handler authed(RouteContext& ctx, AuthedHandler handler);
// The same, for a caller holding at least one of `any_of` (admin holds all); 403 forbidden
// naming them otherwise (docs/tenants.md).
Handler authed(RouteContext& ctx, ScopeSet any_of, AuthedHandler handler);
inline constexpr ScopeSet kSandboxScope = static_cast<ScopeSet>(Scope::Sandboxes);
inline constexpr ScopeSet kCiScopes =
    static_cast<ScopeSet>(Scope::CiSubmit) | static_cast<ScopeSet>(Scope::CiTrusted) | static_cast<ScopeSet>(Scope::CiRead);
// The Caller of an "Authorization: Bearer <token>" header, or, without one, of the dashboard's
// session cookie (ui_session.h: with its CSRF and origin checks), or Unauthorized.
Result<Caller> authenticate_bearer(Authenticator& auth, const Request& req, const std::string& public_url = "");
// A fresh id for a request (X-Request-Id, error bodies, the log).
std::string new_request_id();
// The body, or an error (413) when it is larger than `limit`. The server already refused bodies
// over the route's limit before reading them; this is for limits tighter than the route's.
Status check_body_size(const Request& req, size_t limit);
// Regex fragment for a path id captured as matches[1].
inline constexpr const char* kId = "([^/]+)";

}  // namespace kiln::daemon::http

namespace kiln::daemon::http {
// The id captured from the route's path ({id}, matches[1]).
std::string path_id(const Request& req);
// Ids the API can have issued (sb-/snap- + 12 hex digits); others are not_found without a lookup.
bool plausible_sandbox_id(const std::string& id);
bool plausible_snapshot_id(const std::string& id);
Error sandbox_not_found(const std::string& id);
}  // namespace kiln::daemon::http
