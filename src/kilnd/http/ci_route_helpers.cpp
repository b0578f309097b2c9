// What /v1/jobs and /v1/pipelines share (see ci_route_helpers.h).
#include "kilnd/http/ci_route_helpers.h"

#include <regex>

namespace kiln::daemon::http {

namespace {

bool plausible_job_id(const std::string& id) {
    static const std::regex kJob("^job-[0-9a-f]{12}$");
    return std::regex_match(id, kJob);
}

bool plausible_pipeline_id(const std::string& id) {
    static const std::regex kPipeline("^pipeline-[0-9a-f]{12}$");
    return std::regex_match(id, kPipeline);
}

Error not_found(const std::string& what, const std::string& id) {
    return make_error(ErrorCode::NotFound, "no " + what + " '" + id.substr(0, 80) + "'");
}

json time_or_null(int64_t ms) { return ms ? json(rfc3339_ms(ms)) : json(nullptr); }

int64_t duration(int64_t started_ms, int64_t finished_ms) {
    return finished_ms && started_ms ? finished_ms - started_ms : 0;
}

// The caller owns it, or may read every job.
bool may_see(const Caller& caller, const ci::JobSpec& spec) {
    return spec.owner_token_id == caller.token_id || caller.has(Scope::CiRead);
}

// A local path is a folder on kilnd's host, which only an operator may hand to a job.
bool is_local_repo(const std::string& repo) { return !repo.empty() && (repo[0] == '/' || repo.rfind("file:", 0) == 0); }

}  // namespace

json render_job(const ci::JobInfo& j) {
    json steps = json::array();
    for (const auto& s : j.steps)
        steps.push_back({{"name", s.name}, {"state", s.state},
                         {"exit_code", s.exit_code >= 0 ? json(s.exit_code) : json(nullptr)},
                         {"duration_ms", s.duration_ms},
                         {"started_at", time_or_null(s.started_at_ms)},
                         {"shard", s.shard >= 0 ? json(s.shard) : json(nullptr)}});
    json junit = nullptr;
    if (j.junit)
        junit = {{"tests", j.junit->tests}, {"failures", j.junit->failures}, {"errors", j.junit->errors},
                 {"skipped", j.junit->skipped}};
    // Never the secrets: JobSpec::secrets is not rendered, by design.
    return json{{"id", j.id},
                {"pipeline", j.pipeline_id},
                {"name", j.name},
                {"needs", j.needs},
                {"state", ci::job_state_name(j.state)},
                {"repo", j.spec.repo},
                {"sha", j.sha},
                {"ref", j.spec.ref},
                {"source", j.spec.source.empty() ? "cli" : j.spec.source},
                {"trusted", j.spec.trusted},
                {"labels", j.spec.labels},
                {"attempts", j.attempts},
                {"restarts", j.restarts},
                {"attempt", j.attempt},
                {"attempt_reason", j.attempt_reason},
                {"host", j.host},
                {"error", j.error},
                {"template_key", j.template_key},
                {"bake_hit", j.bake_hit},
                {"steps", steps},
                {"junit", junit},
                {"artifacts", j.artifacts},
                {"created_at", rfc3339_ms(j.created_at_ms)},
                {"started_at", time_or_null(j.started_at_ms)},
                {"finished_at", time_or_null(j.finished_at_ms)},
                {"duration_ms", duration(j.started_at_ms, j.finished_at_ms)},
                {"steps_ms", j.steps_ms}};
}

json render_pipeline(const ci::PipelineInfo& p) {
    json jobs = json::array();
    for (const auto& j : p.jobs) jobs.push_back(render_job(j));
    return json{{"id", p.id},
                {"state", ci::pipeline_state_name(p.state)},
                {"repo", p.spec.repo},
                {"sha", p.sha},
                {"ref", p.spec.ref},
                {"source", p.spec.source.empty() ? "cli" : p.spec.source},
                {"trusted", p.spec.trusted},
                {"labels", p.spec.labels},
                {"error", p.error},
                {"created_at", rfc3339_ms(p.created_at_ms)},
                {"started_at", time_or_null(p.started_at_ms)},
                {"finished_at", time_or_null(p.finished_at_ms)},
                {"duration_ms", duration(p.started_at_ms, p.finished_at_ms)},
                {"jobs", jobs}};
}

Result<ci::JobInfo> visible_job(ci::JobService& jobs, const Caller& caller, const std::string& id) {
    if (!plausible_job_id(id)) return not_found("job", id);
    auto j = jobs.get(id);
    if (!j.ok()) return j.error().code == ErrorCode::NotFound ? not_found("job", id) : j.error();
    if (!may_see(caller, j->spec)) return not_found("job", id);
    return j;
}

Result<ci::PipelineInfo> visible_pipeline(ci::JobService& jobs, const Caller& caller, const std::string& id) {
    if (!plausible_pipeline_id(id)) return not_found("pipeline", id);
    auto p = jobs.get_pipeline(id);
    if (!p.ok()) return p.error().code == ErrorCode::NotFound ? not_found("pipeline", id) : p.error();
    if (!may_see(caller, p->spec)) return not_found("pipeline", id);
    return p;
}

Status check_may_cancel(const Caller& caller, const ci::JobSpec& spec, const std::string& what) {
    if (spec.owner_token_id != caller.token_id && !caller.is_admin())
        return make_error(ErrorCode::Forbidden, "cancelling another token's " + what + " needs the admin scope");
    return ok_status();
}

Error no_ci_jobs() { return make_error(ErrorCode::Unavailable, "this kilnd runs no CI jobs"); }

Result<ci::JobSpec> parse_submission(const std::string& body, const Caller& caller) {
    if (body.find_first_not_of(" \t\r\n") == std::string::npos)
        return make_error(ErrorCode::MalformedBody, "the request body is empty; a JSON object is expected");
    json doc = json::parse(body, nullptr, false);
    if (doc.is_discarded()) return make_error(ErrorCode::MalformedBody, "the request body is not valid JSON");
    if (!doc.is_object()) return make_error(ErrorCode::MalformedBody, "the request body must be a JSON object");
    ci::JobSpec spec;
    for (const auto& [key, value] : doc.items()) {
        if (key != "repo" && key != "sha" && key != "ref")
            return make_error(ErrorCode::InvalidArgument, "unknown field '" + key.substr(0, 64) + "'");
        if (!value.is_string()) return make_error(ErrorCode::InvalidArgument, key + " must be a string");
    }
    if (!doc.contains("repo") || doc["repo"].get<std::string>().empty())
        return make_error(ErrorCode::InvalidArgument, "repo is required (a git URL or an absolute path on kilnd's host)");
    spec.repo = doc["repo"].get<std::string>();
    spec.sha = doc.value("sha", "");
    spec.ref = doc.value("ref", "");
    spec.source = "cli";
    // Trusted jobs may get their repository's secrets; only ci:trusted (or admin) makes them.
    spec.trusted = caller.has(Scope::CiTrusted);
    spec.owner_token_id = caller.token_id;
    spec.any_repo = caller.is_admin();  // others: ci_repos decides (ci::LocalJobService::submit)
    if (is_local_repo(spec.repo) && !caller.is_admin())
        return make_error(ErrorCode::Forbidden, "repo: a local path on kilnd's host needs the admin scope; give a git URL");
    return spec;
}

Status check_queued_jobs_quota(ci::JobService& jobs, const Caller& caller) {
    if (!caller.quota.queued_jobs) return ok_status();
    auto unfinished = jobs.unfinished_jobs(caller.token_id);
    if (!unfinished.ok()) return unfinished.error();
    if (*unfinished >= *caller.quota.queued_jobs)
        return make_error(ErrorCode::QuotaExceeded, "token quota queued_jobs: this token has " + std::to_string(*unfinished) +
                                                        " jobs queued or running, its limit is " +
                                                        std::to_string(*caller.quota.queued_jobs));
    return ok_status();
}

Result<ListQuery> parse_list_query(const Request& req, const std::vector<std::string>& states) {
    ListQuery q;
    for (const auto& [key, value] : req.params) {
        if (key == "limit") {
            try {
                size_t used = 0;
                q.limit = std::stoi(value, &used);
                if (used != value.size() || q.limit < 1 || q.limit > 1000) throw std::out_of_range("limit");
            } catch (const std::exception&) {
                return make_error(ErrorCode::InvalidArgument, "limit must be an integer from 1 to 1000");
            }
        } else if (key == "state") {
            bool known = false;
            for (const auto& s : states) known = known || value == s;
            if (!known) return make_error(ErrorCode::InvalidArgument, "unknown state '" + value.substr(0, 32) + "'");
            q.state = value;
        } else if (key == "repo") {
            if (value.size() > 4096) return make_error(ErrorCode::InvalidArgument, "repo is over 4096 bytes");
            q.repo = value;
        } else if (key == "cursor") {
            static const std::regex kCursor("^[a-z]+-[0-9a-f]{12}$");
            if (!std::regex_match(value, kCursor))
                return make_error(ErrorCode::InvalidArgument, "cursor must be the next_cursor of the previous page");
            q.cursor = value;
        } else {
            return make_error(ErrorCode::InvalidArgument, "unknown parameter '" + key.substr(0, 64) + "'");
        }
    }
    return q;
}

ci::ListPage list_page_of(const ListQuery& query, const Caller& caller) {
    // One more than the page shows: whether it is there says whether a next page is.
    return ci::ListPage{query.limit + 1, caller.has(Scope::CiRead) ? 0 : caller.token_id, query.state.value_or(""), query.repo,
                        query.cursor};
}

json page_json(const char* key, json items, int limit) {
    json next = nullptr;
    if (static_cast<int>(items.size()) > limit) {
        items.erase(items.begin() + limit, items.end());
        next = items.back()["id"];
    }
    return json{{key, std::move(items)}, {"next_cursor", next}};
}

}  // namespace kiln::daemon::http
