// /v1/templates and /v1/snapshots: list, get, delete.
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

void add_template_routes(Router& server, RouteContext& ctx) {
    server.Get("/v1/templates", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request&, Response& res) {
        auto list = ctx.service.list_templates(caller);
        if (!list.ok()) return send_error(res, list.error());
        json items = json::array();
        for (const auto& t : *list) items.push_back(render(t));
        send_json(res, 200, json{{"templates", items}});
    }));
    const std::string one_template = std::string("/v1/templates/") + kId;
    server.Get(one_template, authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        auto t = ctx.service.get_template(caller, path_id(req));
        if (!t.ok()) return send_error(res, t.error());
        send_json(res, 200, render(*t));
    }));
    server.Delete(one_template, authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        auto st = ctx.service.remove_template(caller, path_id(req));
        if (!st.ok()) return send_error(res, st.error());
        res.status = 204;
    }));

    server.Get("/v1/snapshots", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request&, Response& res) {
        auto list = ctx.service.list_snapshots(caller);
        if (!list.ok()) return send_error(res, list.error());
        json items = json::array();
        for (const auto& s : *list) items.push_back(render(s));
        send_json(res, 200, json{{"snapshots", items}});
    }));
    const std::string one_snapshot = std::string("/v1/snapshots/") + kId;
    server.Get(one_snapshot, authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        std::string id = path_id(req);
        if (!plausible_snapshot_id(id)) return send_error(res, make_error(ErrorCode::NotFound, "no snapshot '" + id.substr(0, 80) + "'"));
        auto s = ctx.service.get_snapshot(caller, id);
        if (!s.ok()) return send_error(res, s.error());
        send_json(res, 200, render(*s));
    }));
    server.Delete(one_snapshot, authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        std::string id = path_id(req);
        if (!plausible_snapshot_id(id)) return send_error(res, make_error(ErrorCode::NotFound, "no snapshot '" + id.substr(0, 80) + "'"));
        auto st = ctx.service.remove_snapshot(caller, id);
        if (!st.ok()) return send_error(res, st.error());
        res.status = 204;
    }));
}

}  // namespace kiln::daemon::http
