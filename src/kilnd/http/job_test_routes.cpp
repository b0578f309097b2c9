// GET /v1/jobs/{id}/tests: a job's JUnit test cases (from the reports it kept, ci/junit/junit_cases.h),
// failures and errors first, each with its message and output; paged (limit, cursor).
#include <algorithm>

#include "ci/junit/junit_cases.h"
#include "kilnd/http/ci_route_helpers.h"
#include "kilnd/http/job_files_host.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

namespace {

int outcome_rank(ci::JunitOutcome o) {
    switch (o) {
        case ci::JunitOutcome::Failure: return 0;
        case ci::JunitOutcome::Error: return 0;
        case ci::JunitOutcome::Skipped: return 2;
        case ci::JunitOutcome::Passed: return 3;
    }
    return 3;
}

Result<size_t> parse_bounded(const std::string& text, const char* what, size_t lo, size_t hi) {
    try {
        size_t used = 0;
        unsigned long long v = std::stoull(text, &used);
        if (used == text.size() && v >= lo && v <= hi) return static_cast<size_t>(v);
    } catch (const std::exception&) {
    }
    return make_error(ErrorCode::InvalidArgument, std::string(what) + " must be an integer from " + std::to_string(lo) +
                                                      " to " + std::to_string(hi));
}

}  // namespace

void add_job_test_routes(Router& server, RouteContext& ctx) {
    server.Get(std::string("/v1/jobs/") + kId + "/tests",
               authed(ctx, kCiScopes, [&ctx](const Caller& caller, const Request& req, Response& res) {
        if (!ctx.jobs) return send_error(res, no_ci_jobs());
        std::string id = path_id(req);
        auto job = visible_job(*ctx.jobs, caller, id);
        if (!job.ok()) return send_error(res, job.error());
        if (auto here = job_files_here(ctx, *job); !here.ok()) return send_error(res, here.error());
        size_t limit = 200, offset = 0;
        for (const auto& [key, value] : req.params) {
            if (key == "limit") {
                auto v = parse_bounded(value, "limit", 1, 1000);
                if (!v.ok()) return send_error(res, v.error());
                limit = *v;
            } else if (key == "cursor") {
                auto v = parse_bounded(value, "cursor", 0, 100000000);
                if (!v.ok()) return send_error(res, v.error());
                offset = *v;
            } else {
                return send_error(res, make_error(ErrorCode::InvalidArgument, "unknown parameter '" + key.substr(0, 64) + "'"));
            }
        }
        std::string log = ctx.jobs->log_path(id);
        std::vector<ci::JunitCase> cases;
        if (!log.empty()) {
            auto read = ci::read_kept_junit_cases(log.substr(0, log.rfind('/')));
            if (!read.ok()) return send_error(res, read.error());
            cases = std::move(*read);
        }
        std::stable_sort(cases.begin(), cases.end(), [](const ci::JunitCase& a, const ci::JunitCase& b) {
            return outcome_rank(a.outcome) < outcome_rank(b.outcome);
        });
        json items = json::array();
        for (size_t i = offset; i < cases.size() && items.size() < limit; ++i) {
            const auto& c = cases[i];
            items.push_back({{"suite", c.suite}, {"classname", c.classname}, {"name", c.name},
                             {"time_seconds", c.time_seconds}, {"outcome", ci::junit_outcome_name(c.outcome)},
                             {"message", c.message}, {"type", c.type}, {"output", c.output}});
        }
        size_t next = offset + items.size();
        json junit = nullptr;
        if (job->junit)
            junit = {{"tests", job->junit->tests}, {"failures", job->junit->failures}, {"errors", job->junit->errors},
                     {"skipped", job->junit->skipped}};
        send_json(res, 200, json{{"totals", junit}, {"count", cases.size()}, {"cases", items},
                                 {"next_cursor", next < cases.size() ? json(std::to_string(next)) : json(nullptr)}});
    }));
}

}  // namespace kiln::daemon::http
