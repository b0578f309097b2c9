// /v1/sandboxes: create, list, get, set the TTL, delete, snapshot, fork, pause, resume.
#include <regex>

#include "kilnd/http/request_parsing.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

namespace {

// A well-formed id that can exist; anything else is simply not found (never passed on).
bool plausible_id(const std::string& id, const char* prefix) {
    static const std::regex kHex("^[0-9a-f]{12}$");
    size_t n = std::strlen(prefix);
    return id.size() == n + 12 && id.compare(0, n, prefix) == 0 && std::regex_match(id.substr(n), kHex);
}

}  // namespace

std::string path_id(const Request& req) { return req.matches.size() > 1 ? req.matches[1].str() : ""; }

bool plausible_sandbox_id(const std::string& id) { return plausible_id(id, "sb-"); }
bool plausible_snapshot_id(const std::string& id) { return plausible_id(id, "snap-"); }

Error sandbox_not_found(const std::string& id) {
    return make_error(ErrorCode::NotFound, "no sandbox '" + id.substr(0, 80) + "'");
}

void add_sandbox_routes(Router& server, RouteContext& ctx) {
    server.Post("/v1/sandboxes", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        if (auto st = check_body_size(req, ctx.config.max_json_body); !st.ok()) return send_error(res, st.error());
        auto request = parse_create(req.body);
        if (!request.ok()) return send_error(res, request.error());
        auto created = ctx.service.create(caller, *request);
        if (!created.ok()) return send_error(res, created.error());
        send_json(res, 201, render(*created));
    }));

    server.Get("/v1/sandboxes", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        auto filter = parse_list_filter(req.params);
        if (!filter.ok()) return send_error(res, filter.error());
        auto list = ctx.service.list(caller, *filter);
        if (!list.ok()) return send_error(res, list.error());
        json items = json::array();
        for (const auto& s : *list) items.push_back(render(s));
        send_json(res, 200, json{{"sandboxes", items}});
    }));

    const std::string one = std::string("/v1/sandboxes/") + kId;
    server.Get(one, authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        std::string id = path_id(req);
        if (!plausible_sandbox_id(id)) return send_error(res, sandbox_not_found(id));
        auto s = ctx.service.get(caller, id);
        if (!s.ok()) return send_error(res, s.error());
        send_json(res, 200, render(*s));
    }));

    server.Patch(one, authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        std::string id = path_id(req);
        if (!plausible_sandbox_id(id)) return send_error(res, sandbox_not_found(id));
        if (auto st = check_body_size(req, ctx.config.max_json_body); !st.ok()) return send_error(res, st.error());
        auto ttl = parse_patch_ttl(req.body);
        if (!ttl.ok()) return send_error(res, ttl.error());
        auto s = ctx.service.set_ttl(caller, id, *ttl);
        if (!s.ok()) return send_error(res, s.error());
        send_json(res, 200, render(*s));
    }));

    server.Delete(one, authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        std::string id = path_id(req);
        if (!plausible_sandbox_id(id)) return send_error(res, sandbox_not_found(id));
        auto st = ctx.service.remove(caller, id);
        if (!st.ok()) return send_error(res, st.error());
        res.status = 204;
    }));

    server.Post(one + "/snapshot", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        std::string id = path_id(req);
        if (!plausible_sandbox_id(id)) return send_error(res, sandbox_not_found(id));
        if (auto st = check_body_size(req, ctx.config.max_json_body); !st.ok()) return send_error(res, st.error());
        auto name = parse_snapshot_name(req.body);
        if (!name.ok()) return send_error(res, name.error());
        auto snap = ctx.service.snapshot(caller, id, *name);
        if (!snap.ok()) return send_error(res, snap.error());
        send_json(res, 201, render(*snap));
    }));

    server.Post(one + "/fork", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        std::string id = path_id(req);
        if (!plausible_sandbox_id(id)) return send_error(res, sandbox_not_found(id));
        if (auto st = check_body_size(req, ctx.config.max_json_body); !st.ok()) return send_error(res, st.error());
        auto request = parse_fork(req.body);
        if (!request.ok()) return send_error(res, request.error());
        auto child = ctx.service.fork(caller, id, *request);
        if (!child.ok()) return send_error(res, child.error());
        send_json(res, 201, render(*child));
    }));

    // Pause and resume (docs/pause.md). Both answer the sandbox as it is afterwards.
    server.Post(one + "/pause", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        std::string id = path_id(req);
        if (!plausible_sandbox_id(id)) return send_error(res, sandbox_not_found(id));
        auto s = ctx.service.pause(caller, id);
        if (!s.ok()) return send_error(res, s.error());
        send_json(res, 200, render(*s));
    }));

    server.Post(one + "/resume", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        std::string id = path_id(req);
        if (!plausible_sandbox_id(id)) return send_error(res, sandbox_not_found(id));
        if (auto st = check_body_size(req, ctx.config.max_json_body); !st.ok()) return send_error(res, st.error());
        auto ttl = parse_resume(req.body);
        if (!ttl.ok()) return send_error(res, ttl.error());
        auto s = ctx.service.resume(caller, id, *ttl);
        if (!s.ok()) return send_error(res, s.error());
        send_json(res, 200, render(*s));
    }));
}

}  // namespace kiln::daemon::http
