// /v1/pipelines: queue a pipeline (every job of a commit's .kiln.yml), list, get and cancel them.
// Same scopes, visibility and quota as /v1/jobs (ci_route_helpers.h); the jobs are src/ci/jobs.
#include "ci/jobs/job_service.h"
#include "kilnd/http/ci_route_helpers.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

void add_pipeline_routes(Router& server, RouteContext& ctx) {
    auto unavailable = [](Response& res) { send_error(res, no_ci_jobs()); };

    server.Post("/v1/pipelines", authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req,
                                                                Response& res) {
        if (!ctx.jobs) return unavailable(res);
        if (!caller.has(Scope::CiSubmit) && !caller.has(Scope::CiTrusted))
            return send_error(res, make_error(ErrorCode::Forbidden, "queueing a pipeline needs the ci:submit or ci:trusted scope"));
        if (auto st = check_body_size(req, ctx.config.max_json_body); !st.ok()) return send_error(res, st.error());
        auto spec = parse_submission(req.body, caller);
        if (!spec.ok()) return send_error(res, spec.error());
        if (auto st = check_queued_jobs_quota(*ctx.jobs, caller); !st.ok()) return send_error(res, st.error());
        auto first = ctx.jobs->submit(*spec);
        if (!first.ok()) return send_error(res, first.error());
        auto pipeline = ctx.jobs->get_pipeline(first->pipeline_id);
        if (!pipeline.ok()) return send_error(res, pipeline.error());
        send_json(res, 201, render_pipeline(*pipeline));
    }));

    server.Get("/v1/pipelines", authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req,
                                                               Response& res) {
        if (!ctx.jobs) return unavailable(res);
        static const std::vector<std::string> kStates = [] {
            std::vector<std::string> names;
            for (auto st : {ci::PipelineState::Queued, ci::PipelineState::Running, ci::PipelineState::Passed,
                            ci::PipelineState::Failed, ci::PipelineState::Error, ci::PipelineState::Cancelled})
                names.push_back(ci::pipeline_state_name(st));
            return names;
        }();
        auto query = parse_list_query(req, kStates);
        if (!query.ok()) return send_error(res, query.error());
        // One page from the store (ListPage: filtered and ordered there, never the whole table).
        auto page = ctx.jobs->list_pipelines_page(list_page_of(*query, caller));
        if (!page.ok()) return send_error(res, page.error());
        json items = json::array();
        for (const auto& p : *page) items.push_back(render_pipeline(p));
        send_json(res, 200, page_json("pipelines", std::move(items), query->limit));
    }));

    const std::string one = std::string("/v1/pipelines/") + kId;
    server.Get(one, authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req, Response& res) {
        if (!ctx.jobs) return unavailable(res);
        auto p = visible_pipeline(*ctx.jobs, caller, path_id(req));
        if (!p.ok()) return send_error(res, p.error());
        send_json(res, 200, render_pipeline(*p));
    }));

    server.Post(one + "/cancel", authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req,
                                                                Response& res) {
        if (!ctx.jobs) return unavailable(res);
        std::string id = path_id(req);
        auto p = visible_pipeline(*ctx.jobs, caller, id);
        if (!p.ok()) return send_error(res, p.error());
        if (auto st = check_may_cancel(caller, p->spec, "pipeline"); !st.ok()) return send_error(res, st.error());
        if (auto st = ctx.jobs->cancel_pipeline(id); !st.ok()) return send_error(res, st.error());
        auto now = ctx.jobs->get_pipeline(id);
        if (!now.ok()) return send_error(res, now.error());
        send_json(res, 200, render_pipeline(*now));
    }));
}

}  // namespace kiln::daemon::http
