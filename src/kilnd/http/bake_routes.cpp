// GET /v1/bakes (admin): the CI bake cache for the dashboard's templates page: each bake's key,
// template, snapshot, the host that baked it and its size on disk, when it was made and last used, and its hits and
// misses over the jobs kept. Bakes are snapshots owned by kilnd's internal CI token, which no
// tenant can list; the size is read as admin from the snapshot's own record.
#include "kilnd/http/ci_route_helpers.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

namespace {

constexpr int kMaxBakes = 1000;  // the cache keeps far fewer (JobServiceConfig's bake limit)

json render_bake(const ci::BakeInfo& b, const Result<SnapshotInfo>& snapshot) {
    json j = {{"key", b.key},
              {"template", b.template_name},
              {"snapshot_id", b.snapshot_id},
              {"host", b.host},
              {"created_at", rfc3339_ms(b.created_at_ms)},
              {"used_at", rfc3339_ms(b.used_at_ms)},
              {"hits", b.hits},
              {"misses", b.misses},
              // null: the snapshot is gone (evicted or deleted after the row was read)
              {"size_bytes", snapshot.ok() ? json(snapshot->size_bytes) : json(nullptr)}};
    return j;
}

}  // namespace

void add_bake_routes(Router& server, RouteContext& ctx) {
    constexpr auto kAdmin = static_cast<ScopeSet>(Scope::Admin);
    server.Get("/v1/bakes", authed(ctx, kAdmin, [&ctx](const Caller& caller, const Request&, Response& res) {
        if (!ctx.jobs) return send_error(res, no_ci_jobs());
        auto bakes = ctx.jobs->list_bakes(kMaxBakes);
        if (!bakes.ok()) return send_error(res, bakes.error());
        json items = json::array();
        for (const auto& b : *bakes) items.push_back(render_bake(b, ctx.service.get_snapshot(caller, b.snapshot_id)));
        send_json(res, 200, json{{"bakes", items}});
    }));
}

}  // namespace kiln::daemon::http
