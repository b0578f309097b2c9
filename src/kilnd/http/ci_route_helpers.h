// What /v1/jobs and /v1/pipelines share: their JSON, who may see a job or pipeline, the body of a
// submission, the queued_jobs quota and the list filters. Internal to src/kilnd/http.
#pragma once

#include <optional>
#include <string>

#include "base/result.h"
#include "ci/jobs/job_service.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

json render_job(const ci::JobInfo& job);
json render_pipeline(const ci::PipelineInfo& pipeline);

// A job or pipeline the caller may see: its own; every one (webhooks' too) with ci:read or
// admin. Others are not_found, as if they did not exist; so are ids the API cannot have issued.
Result<ci::JobInfo> visible_job(ci::JobService& jobs, const Caller& caller, const std::string& id);
Result<ci::PipelineInfo> visible_pipeline(ci::JobService& jobs, const Caller& caller, const std::string& id);

// Cancelling is for the owner, or an admin ("job" or "pipeline" names it in the error).
Status check_may_cancel(const Caller& caller, const ci::JobSpec& spec, const std::string& what);
// The answer of every CI route when kilnd runs no CI jobs (RouteContext::jobs is null).
Error no_ci_jobs();

// The JobSpec of a POST /v1/jobs or /v1/pipelines body {repo, sha|ref} for this caller.
Result<ci::JobSpec> parse_submission(const std::string& body, const Caller& caller);
// Refuses a submission past the caller's queued_jobs quota (docs/tenants.md).
Status check_queued_jobs_quota(ci::JobService& jobs, const Caller& caller);

// The query of a list route: limit (1..1000, default 100), an optional state, which must be one
// of `states` (the names of that resource's states), repo, and cursor (the next_cursor of the
// previous page: the id of its last item).
struct ListQuery {
    int limit = 100;
    std::optional<std::string> state;
    std::string repo;
    std::string cursor;
};
Result<ListQuery> parse_list_query(const Request& req, const std::vector<std::string>& states);
// The page of the store a list route asks for: ci:read (and admin) list everyone's, others their own.
ci::ListPage list_page_of(const ListQuery& query, const Caller& caller);
// A list's answer: {<key>: the first `limit` items, next_cursor: the last shown item's id when
// there are more (list_page_of asked the store for one more than the limit), else null}.
json page_json(const char* key, json items, int limit);

}  // namespace kiln::daemon::http
