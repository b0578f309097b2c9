// /v1/hosts (admin): the fleet's hosts with their state and load, and the drain switch
// (docs/fleet.md). Admin only: the list names every host's internal URL, and a drain changes
// where everyone's sandboxes go.
#include "daemon/fleet/host_registry.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {
namespace {

constexpr auto kAdmin = static_cast<ScopeSet>(Scope::Admin);

json render_host(const HostStatus& h, const std::string& self) {
    const HostRecord& r = h.record;
    return json{{"name", r.spec.name},
                {"url", r.spec.advertise_url},
                {"state", host_state_name(h.state)},
                {"draining", r.draining},
                {"self", r.spec.name == self},
                {"version", r.spec.version},
                {"accel", r.spec.accel},
                {"capacity", {{"max_sandboxes", r.spec.max_sandboxes}, {"vcpus", r.spec.vcpus}, {"max_memory_mib", r.spec.max_memory_mib}}},
                {"live_sandboxes", r.live_sandboxes},
                {"memory_mib_in_use", r.memory_mib_in_use},
                {"heartbeat_age_ms", h.heartbeat_age_ms},
                {"heartbeat_at", rfc3339_ms(r.heartbeat_at_ms)},
                {"started_at", rfc3339_ms(r.started_at_ms)}};
}

Error no_registry() { return make_error(ErrorCode::Unavailable, "this kilnd keeps no host registry"); }

void set_draining(RouteContext& ctx, const Request& req, Response& res, bool draining) {
    if (!ctx.config.hosts) return send_error(res, no_registry());
    std::string name = path_id(req);
    // Host names are checked words (config host_name); anything else names no host.
    if (!valid_host_name(name)) return send_error(res, make_error(ErrorCode::NotFound, "no host '" + name.substr(0, 64) + "'"));
    if (auto st = ctx.config.hosts->set_draining(name, draining); !st.ok()) return send_error(res, st.error());
    auto host = ctx.config.hosts->host(name);
    if (!host.ok()) return send_error(res, host.error());
    send_json(res, 200, render_host(*host, ctx.config.hosts->name()));
}

}  // namespace

void add_host_routes(Router& server, RouteContext& ctx) {
    server.Get("/v1/hosts", authed(ctx, kAdmin, [&ctx](const Caller&, const Request&, Response& res) {
        if (!ctx.config.hosts) return send_error(res, no_registry());
        auto hosts = ctx.config.hosts->hosts();
        if (!hosts.ok()) return send_error(res, hosts.error());
        json items = json::array();
        for (const auto& h : *hosts) items.push_back(render_host(h, ctx.config.hosts->name()));
        send_json(res, 200, json{{"hosts", items}});
    }));
    const std::string one = std::string("/v1/hosts/") + kId;
    server.Post(one + "/drain", authed(ctx, kAdmin, [&ctx](const Caller&, const Request& req, Response& res) {
        set_draining(ctx, req, res, true);
    }));
    server.Post(one + "/undrain", authed(ctx, kAdmin, [&ctx](const Caller&, const Request& req, Response& res) {
        set_draining(ctx, req, res, false);
    }));
}

}  // namespace kiln::daemon::http
