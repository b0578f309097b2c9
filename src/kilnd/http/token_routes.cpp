// GET /v1/token: who the caller is, what its scopes allow and how much of its quota it uses, so a
// client (kiln whoami, the SDK) can say why a call would be refused before making it.
#include "ci/jobs/job_service.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

namespace {

json limit_or_null(const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); }

}  // namespace

void add_token_routes(Router& server, RouteContext& ctx) {
    server.Get("/v1/token", authed(ctx, [&ctx](const Caller& caller, const Request&, Response& res) {
        const TokenQuota& q = caller.quota;
        json usage = json::object();
        if (auto live = ctx.service.list(caller, ListFilter{}); live.ok()) {
            int64_t memory = 0;
            for (const auto& s : *live) memory += s.memory_mib;
            usage["sandboxes"] = live->size();
            usage["memory_mib"] = memory;
        }
        if (auto snaps = ctx.service.list_snapshots(caller); snaps.ok()) {
            int64_t bytes = 0;
            for (const auto& s : *snaps) bytes += s.size_bytes;
            usage["snapshots"] = snaps->size();
            usage["snapshot_mib"] = bytes >> 20;
        }
        if (ctx.jobs)
            if (auto n = ctx.jobs->unfinished_jobs(caller.token_id); n.ok()) usage["queued_jobs"] = *n;
        send_json(res, 200,
                  json{{"id", caller.token_id},
                       {"name", caller.token_name},
                       {"scopes", scope_names(caller.scopes)},
                       {"quota", {{"sandboxes", limit_or_null(q.sandboxes)},
                                  {"memory_mib", limit_or_null(q.memory_mib)},
                                  {"snapshots", limit_or_null(q.snapshots)},
                                  {"snapshot_mib", limit_or_null(q.snapshot_mib)},
                                  {"queued_jobs", limit_or_null(q.queued_jobs)},
                                  {"lifetime_seconds", limit_or_null(q.lifetime_seconds)}}},
                       {"usage", usage}});
    }));
}

}  // namespace kiln::daemon::http
