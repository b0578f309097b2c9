// GET /v1/stats/creates: how long each sandbox create of the last hour took (kilnd's own record
// since it started, Metrics::recent_creates), for the dashboard's chart. The same numbers as
// /metrics' create histogram, with their times; no ids or owners.
#include "base/clock.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

void add_stats_routes(Router& server, RouteContext& ctx) {
    server.Get("/v1/stats/creates", authed(ctx, [&ctx](const Caller&, const Request&, Response& res) {
        json items = json::array();
        for (const auto& c : ctx.metrics.recent_creates(now_unix_ms() - 3600 * 1000))
            items.push_back({{"at", rfc3339_ms(c.at_ms)}, {"ms", c.ms}});
        send_json(res, 200, json{{"creates", items}});
    }));
}

}  // namespace kiln::daemon::http
