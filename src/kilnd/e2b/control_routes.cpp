// E2B's control plane on Kiln's SandboxService (docs/e2b.md "Supported calls"). E2B's API knows
// two states, running and paused (Kiln's pausing and paused); a sandbox that ended (killed,
// expired, lost) is not found.
#include <chrono>
#include <limits>
#include <thread>
#include <nlohmann/json.hpp>

#include "kilnd/e2b/e2b_context.h"
#include "kilnd/e2b/e2b_errors.h"
#include "kilnd/e2b/list_query.h"
#include "kilnd/e2b/sandbox_json.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::e2b {

namespace {

using http::Handler;
using http::Request;
using http::Response;
using nlohmann::json;
using KeyedHandler = std::function<void(const Caller&, const Request&, Response&)>;

// A route that takes an API key: checked from the headers before the body is read (the server
// does it through the dialect's authenticate), and the key must hold the sandboxes scope.
Handler keyed(KeyedHandler fn) {
    Handler h(
        [fn = std::move(fn)](const Request& req, Response& res) {
            if (!req.caller) return send_e2b_status(res, 401, "an X-API-KEY header is required");
            fn(*req.caller, req, res);
        },
        true);
    h.admits = [](const Caller& caller) -> Status {
        if (caller.has(Scope::Sandboxes) || caller.is_admin()) return ok_status();
        return make_error(ErrorCode::Forbidden, "this API key lacks the sandboxes scope");
    };
    return h;
}

// How long a connect waits for a sandbox that is being paused before it resumes it.
constexpr std::chrono::minutes kPauseWait{5};

Error not_found(const std::string& id) { return make_error(ErrorCode::NotFound, "sandbox " + id.substr(0, 64) + " not found"); }

// The caller's sandbox as E2B sees it: running or paused, else not found (E2B forgets ended ones).
Result<SandboxInfo> visible_sandbox(E2bContext& ctx, const Caller& caller, const std::string& id) {
    if (!http::plausible_sandbox_id(id)) return not_found(id);
    auto info = ctx.service.get(caller, id);
    if (!info.ok()) return info.error().code == ErrorCode::NotFound ? not_found(id) : info.error();
    if (!visible_to_e2b(info->state())) return not_found(id);
    return info;
}

// {"timeout": seconds}, as the timeout and connect calls send it; absent when `optional`.
Result<std::optional<int64_t>> timeout_of(const Request& req, bool optional) {
    if (req.body.empty() && optional) return std::optional<int64_t>();
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) return make_error(ErrorCode::MalformedBody, "the body must be a JSON object");
    auto t = body.find("timeout");
    if (t == body.end() || t->is_null()) {
        if (optional) return std::optional<int64_t>();
        return make_error(ErrorCode::InvalidArgument, "timeout (seconds) is required");
    }
    if (!t->is_number_integer() || t->get<int64_t>() < 0) return make_error(ErrorCode::InvalidArgument, "timeout must be a whole number of seconds");
    return std::optional<int64_t>(t->get<int64_t>());
}

void create(E2bContext& ctx, const Caller& caller, const Request& req, Response& res) {
    auto request = parse_new_sandbox(req.body);
    if (!request.ok()) return send_e2b_error(res, request.error());
    auto info = ctx.service.create(caller, *request);
    if (!info.ok()) return send_e2b_error(res, info.error());
    http::send_json(res, 201, render_sandbox(*info, ctx.access.token_for(info->id)));
}

// Connect: the sandbox as a create returns it. A paused one is resumed (201) with the timeout
// asked for, or what it had left; a running one's timeout is extended (never shortened) to it.
void connect(E2bContext& ctx, const Caller& caller, const Request& req, Response& res) {
    const std::string id = http::path_id(req);
    auto timeout = timeout_of(req, true);
    if (!timeout.ok()) return send_e2b_error(res, timeout.error());
    auto info = visible_sandbox(ctx, caller, id);
    if (!info.ok()) return send_e2b_error(res, info.error());
    // Pausing (the end of an autoPause timeout, or another client's pause): E2B shows it as
    // paused, so a connect waits for the pause to finish, then resumes it.
    const auto pause_deadline = std::chrono::steady_clock::now() + kPauseWait;
    while (info->state() == SandboxState::Pausing && std::chrono::steady_clock::now() < pause_deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        info = visible_sandbox(ctx, caller, id);
        if (!info.ok()) return send_e2b_error(res, info.error());
    }
    if (std::string(e2b_state(info->state())) == "paused") {
        auto resumed = ctx.service.resume(caller, id, *timeout);
        if (!resumed.ok()) return send_e2b_error(res, resumed.error());
        return http::send_json(res, 201, render_sandbox(*resumed, ctx.access.token_for(id)));
    }
    if (*timeout) {
        const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch()).count();
        if (now_ms + **timeout * 1000 > info->expires_at_ms) {
            auto extended = ctx.service.set_ttl(caller, id, **timeout);
            if (!extended.ok()) return send_e2b_error(res, extended.error());
            info = std::move(extended);
        }
    }
    http::send_json(res, 200, render_sandbox(*info, ctx.access.token_for(id)));
}

void list(E2bContext& ctx, const Caller& caller, const Request& req, Response& res, bool paged) {
    auto query = parse_list_query(req);
    if (!query.ok()) return send_e2b_error(res, query.error());
    if (!paged) query->limit = std::numeric_limits<size_t>::max();  // GET /sandboxes has no paging
    ListFilter filter;
    filter.metadata = query->metadata;
    auto all = ctx.service.list(caller, filter);
    if (!all.ok()) return send_e2b_error(res, all.error());
    ListPage page = page_of(std::move(*all), *query);
    json out = json::array();
    for (const auto& s : page.items) out.push_back(render_listed_sandbox(s));
    if (!page.next_token.empty()) res.set_header("X-Next-Token", page.next_token);
    http::send_json(res, 200, out);
}

void not_supported(http::Router& router, const char* method, const std::string& pattern, const std::string& what) {
    Handler h = keyed([what](const Caller&, const Request&, Response& res) {
        send_e2b_status(res, 501, what + " is not supported by Kiln's E2B listener (docs/e2b.md)");
    });
    const std::string m = method;
    if (m == "GET") router.Get(pattern, std::move(h));
    else if (m == "POST") router.Post(pattern, std::move(h));
    else if (m == "PUT") router.Put(pattern, std::move(h));
    else if (m == "PATCH") router.Patch(pattern, std::move(h));
    else router.Delete(pattern, std::move(h));
}

}  // namespace

void add_control_routes(http::Router& router, E2bContext& ctx) {
    using http::kId;
    const std::string sandbox = std::string("/sandboxes/") + kId;
    auto create_route = keyed([&ctx](const Caller& c, const Request& req, Response& res) { create(ctx, c, req, res); });
    router.Post("/sandboxes", create_route);     // SDKs up to 2.50
    router.Post("/v2/sandboxes", create_route);  // 2.51 on
    auto connect_route = keyed([&ctx](const Caller& c, const Request& req, Response& res) { connect(ctx, c, req, res); });
    router.Post(sandbox + "/connect", connect_route);
    router.Post("/v2" + sandbox + "/connect", connect_route);
    router.Get("/sandboxes", keyed([&ctx](const Caller& c, const Request& req, Response& res) { list(ctx, c, req, res, false); }));
    router.Get("/v2/sandboxes", keyed([&ctx](const Caller& c, const Request& req, Response& res) { list(ctx, c, req, res, true); }));

    router.Get(sandbox, keyed([&ctx](const Caller& c, const Request& req, Response& res) {
                   auto info = visible_sandbox(ctx, c, http::path_id(req));
                   if (!info.ok()) return send_e2b_error(res, info.error());
                   http::send_json(res, 200, render_sandbox_detail(*info, ctx.access.token_for(info->id)));
               }));
    router.Delete(sandbox, keyed([&ctx](const Caller& c, const Request& req, Response& res) {
                      auto info = visible_sandbox(ctx, c, http::path_id(req));
                      if (!info.ok()) return send_e2b_error(res, info.error());
                      if (auto st = ctx.service.remove(c, info->id); !st.ok()) return send_e2b_error(res, st.error());
                      res.status = 204;
                  }));
    router.Post(sandbox + "/timeout", keyed([&ctx](const Caller& c, const Request& req, Response& res) {
                    auto timeout = timeout_of(req, false);
                    if (!timeout.ok()) return send_e2b_error(res, timeout.error());
                    auto info = visible_sandbox(ctx, c, http::path_id(req));
                    if (!info.ok()) return send_e2b_error(res, info.error());
                    auto set = ctx.service.set_ttl(c, info->id, **timeout);
                    if (!set.ok()) return send_e2b_error(res, set.error());
                    res.status = 204;
                }));
    // Pause (docs/pause.md); 409, which the SDK reads as "already paused", when it is.
    router.Post(sandbox + "/pause", keyed([&ctx](const Caller& c, const Request& req, Response& res) {
                    auto info = visible_sandbox(ctx, c, http::path_id(req));
                    if (!info.ok()) return send_e2b_error(res, info.error());
                    if (std::string(e2b_state(info->state())) == "paused")
                        return send_e2b_status(res, 409, "sandbox " + info->id + " is already paused");
                    auto paused = ctx.service.pause(c, info->id);
                    if (!paused.ok()) return send_e2b_error(res, paused.error());
                    res.status = 204;
                }));

    // E2B calls with no Kiln equivalent: a clear 501, not a 404 the SDK would read as "sandbox
    // not found".
    not_supported(router, "GET", sandbox + "/metrics", "sandbox metrics");
    not_supported(router, "PUT", sandbox + "/network", "changing a running sandbox's network");
    not_supported(router, "POST", sandbox + "/snapshots", "E2B snapshots (use Kiln's POST /v1/sandboxes/{id}/snapshot)");
    not_supported(router, "GET", "/snapshots", "E2B snapshots");
    not_supported(router, "POST", sandbox + "/fork", "E2B fork (use Kiln's POST /v1/sandboxes/{id}/fork)");
    not_supported(router, "POST", sandbox + "/refreshes", "refreshes");
    for (const char* method : {"GET", "POST", "DELETE", "PATCH"})
        not_supported(router, method, "/(v[0-9]+/)?templates(/.*)?", "building E2B templates (Kiln's templates are its images and snapshots: docs/snapshots.md)");
}

}  // namespace kiln::daemon::e2b
