// /v1/jobs: queue, list, get and cancel CI jobs, follow their logs (NDJSON), list and download
// their artifacts. The jobs themselves are src/ci/jobs (docs/ci.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <regex>

#include "base/unique_fd.h"
#include "ci/jobs/job_service.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

namespace {

constexpr size_t kLogChunk = 256 * 1024;

bool plausible_job_id(const std::string& id) {
    static const std::regex kJob("^job-[0-9a-f]{12}$");
    return std::regex_match(id, kJob);
}

Error job_not_found(const std::string& id) { return make_error(ErrorCode::NotFound, "no job '" + id.substr(0, 80) + "'"); }

bool is_final(ci::JobState s) { return s != ci::JobState::Queued && s != ci::JobState::Running; }

json time_or_null(int64_t ms) { return ms ? json(rfc3339_ms(ms)) : json(nullptr); }

json render_job(const ci::JobInfo& j) {
    json steps = json::array();
    for (const auto& s : j.steps)
        steps.push_back({{"name", s.name}, {"state", s.state},
                         {"exit_code", s.exit_code >= 0 ? json(s.exit_code) : json(nullptr)},
                         {"duration_ms", s.duration_ms}});
    json junit = nullptr;
    if (j.junit)
        junit = {{"tests", j.junit->tests}, {"failures", j.junit->failures}, {"errors", j.junit->errors},
                 {"skipped", j.junit->skipped}};
    // Never the secrets: JobSpec::secrets is not rendered, by design.
    return json{{"id", j.id},
                {"state", ci::job_state_name(j.state)},
                {"repo", j.spec.repo},
                {"sha", j.sha},
                {"ref", j.spec.ref},
                {"source", j.spec.source.empty() ? "cli" : j.spec.source},
                {"trusted", j.spec.trusted},
                {"labels", j.spec.labels},
                {"attempts", j.attempts},
                {"restarts", j.restarts},
                {"error", j.error},
                {"template_key", j.template_key},
                {"bake_hit", j.bake_hit},
                {"steps", steps},
                {"junit", junit},
                {"artifacts", j.artifacts},
                {"created_at", rfc3339_ms(j.created_at_ms)},
                {"started_at", time_or_null(j.started_at_ms)},
                {"finished_at", time_or_null(j.finished_at_ms)},
                {"duration_ms", j.finished_at_ms && j.started_at_ms ? j.finished_at_ms - j.started_at_ms : 0},
                {"steps_ms", j.steps_ms}};
}

// A job the caller may see: its own; every job (webhooks' too) with ci:read or admin. Others are
// not_found, as if they did not exist.
Result<ci::JobInfo> visible_job(ci::JobService& jobs, const Caller& caller, const std::string& id) {
    if (!plausible_job_id(id)) return job_not_found(id);
    auto j = jobs.get(id);
    if (!j.ok()) return j.error().code == ErrorCode::NotFound ? job_not_found(id) : j.error();
    if (j->spec.owner_token_id != caller.token_id && !caller.has(Scope::CiRead)) return job_not_found(id);
    return j;
}

// A local path is a folder on kilnd's host, which only an operator may hand to a job.
bool is_local_repo(const std::string& repo) { return !repo.empty() && (repo[0] == '/' || repo.rfind("file:", 0) == 0); }

Result<ci::JobSpec> parse_job_create(const std::string& body, const Caller& caller) {
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

// Follows the log file: whole lines as they are appended, until the job is final and read out.
struct LogFollower {
    ci::JobService* jobs;
    std::string id;
    std::string path;
    bool follow = true;
    UniqueFd fd;
    std::string carry;  // an incomplete last line

    // Appends what is new (whole lines) to `out`; returns how many bytes were read.
    size_t read_new(std::string& out) {
        if (!fd) {
            int f = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            if (f < 0) return 0;
            fd = UniqueFd(f);
        }
        char buf[64 * 1024];
        size_t total = 0;
        while (total < kLogChunk) {
            ssize_t n = ::read(fd.get(), buf, sizeof buf);
            if (n <= 0) break;
            carry.append(buf, static_cast<size_t>(n));
            total += static_cast<size_t>(n);
        }
        size_t nl = carry.rfind('\n');
        if (nl != std::string::npos) {
            out.append(carry, 0, nl + 1);
            carry.erase(0, nl + 1);
        }
        return total;
    }
};

}  // namespace

void add_job_routes(Router& server, RouteContext& ctx) {
    auto unavailable = [](Response& res) {
        send_error(res, make_error(ErrorCode::Unavailable, "this kilnd runs no CI jobs"));
    };

    server.Post("/v1/jobs", authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req,
                                                           Response& res) {
        if (!ctx.jobs) return unavailable(res);
        if (!caller.has(Scope::CiSubmit) && !caller.has(Scope::CiTrusted))
            return send_error(res, make_error(ErrorCode::Forbidden, "queueing a job needs the ci:submit or ci:trusted scope"));
        if (auto st = check_body_size(req, ctx.config.max_json_body); !st.ok()) return send_error(res, st.error());
        auto spec = parse_job_create(req.body, caller);
        if (!spec.ok()) return send_error(res, spec.error());
        if (caller.quota.queued_jobs) {
            auto unfinished = ctx.jobs->unfinished_jobs(caller.token_id);
            if (!unfinished.ok()) return send_error(res, unfinished.error());
            if (*unfinished >= *caller.quota.queued_jobs)
                return send_error(res, make_error(ErrorCode::QuotaExceeded,
                                                  "token quota queued_jobs: this token has " + std::to_string(*unfinished) +
                                                      " jobs queued or running, its limit is " +
                                                      std::to_string(*caller.quota.queued_jobs)));
        }
        auto job = ctx.jobs->submit(*spec);
        if (!job.ok()) return send_error(res, job.error());
        send_json(res, 201, render_job(*job));
    }));

    server.Get("/v1/jobs", authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req,
                                                          Response& res) {
        if (!ctx.jobs) return unavailable(res);
        int limit = 100;
        std::optional<std::string> state;
        for (const auto& [key, value] : req.params) {
            if (key == "limit") {
                try {
                    size_t used = 0;
                    limit = std::stoi(value, &used);
                    if (used != value.size() || limit < 1 || limit > 1000) throw std::out_of_range("limit");
                } catch (const std::exception&) {
                    return send_error(res, make_error(ErrorCode::InvalidArgument, "limit must be an integer from 1 to 1000"));
                }
            } else if (key == "state") {
                bool known = false;
                for (auto s : {ci::JobState::Queued, ci::JobState::Running, ci::JobState::Passed, ci::JobState::Failed,
                               ci::JobState::Error, ci::JobState::Cancelled})
                    known = known || value == ci::job_state_name(s);
                if (!known) return send_error(res, make_error(ErrorCode::InvalidArgument, "unknown state '" + value.substr(0, 32) + "'"));
                state = value;
            } else {
                return send_error(res, make_error(ErrorCode::InvalidArgument, "unknown parameter '" + key.substr(0, 64) + "'"));
            }
        }
        // ci:read (and admin) list every job; the others their own.
        auto all = ctx.jobs->list(1000, caller.has(Scope::CiRead) ? 0 : caller.token_id);
        if (!all.ok()) return send_error(res, all.error());
        json items = json::array();
        for (const auto& j : *all) {
            if (state && *state != ci::job_state_name(j.state)) continue;
            items.push_back(render_job(j));
            if (static_cast<int>(items.size()) >= limit) break;
        }
        send_json(res, 200, json{{"jobs", items}});
    }));

    const std::string one = std::string("/v1/jobs/") + kId;
    server.Get(one, authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req, Response& res) {
        if (!ctx.jobs) return unavailable(res);
        auto j = visible_job(*ctx.jobs, caller, path_id(req));
        if (!j.ok()) return send_error(res, j.error());
        send_json(res, 200, render_job(*j));
    }));

    server.Post(one + "/cancel", authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req,
                                                                Response& res) {
        if (!ctx.jobs) return unavailable(res);
        std::string id = path_id(req);
        auto j = visible_job(*ctx.jobs, caller, id);
        if (!j.ok()) return send_error(res, j.error());
        if (j->spec.owner_token_id != caller.token_id && !caller.is_admin())
            return send_error(res, make_error(ErrorCode::Forbidden, "cancelling another token's job needs the admin scope"));
        if (auto st = ctx.jobs->cancel(id); !st.ok()) return send_error(res, st.error());
        auto now = ctx.jobs->get(id);
        if (!now.ok()) return send_error(res, now.error());
        send_json(res, 200, render_job(*now));
    }));

    server.Get(one + "/logs", authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req,
                                                             Response& res) {
        if (!ctx.jobs) return unavailable(res);
        std::string id = path_id(req);
        auto j = visible_job(*ctx.jobs, caller, id);
        if (!j.ok()) return send_error(res, j.error());
        auto follower = std::make_shared<LogFollower>();
        follower->jobs = ctx.jobs;
        follower->id = id;
        follower->path = ctx.jobs->log_path(id);
        std::string follow = req.get_param_value("follow");
        if (!follow.empty() && follow != "true" && follow != "false" && follow != "1" && follow != "0")
            return send_error(res, make_error(ErrorCode::InvalidArgument, "follow must be true or false"));
        follower->follow = follow != "false" && follow != "0";
        res.status = 200;
        // A tail on the server's event loop, not a thread: called again while it returns true,
        // soon after what it wrote went out, later while the log is quiet (http_message.h).
        res.set_tail_content_provider("application/x-ndjson", [follower](DataSink& sink) {
            // Read the state before the file: a job that is final now has written its last line.
            bool final_now = true;
            if (follower->follow) {
                auto j = follower->jobs->get(follower->id);
                final_now = !j.ok() || is_final(j->state);
            }
            std::string lines;
            size_t n = follower->read_new(lines);
            if (!lines.empty()) return sink.write(lines.data(), lines.size());
            if (n == 0 && final_now) sink.done();
            return true;
        });
    }));

    server.Get(one + "/artifacts", authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req,
                                                                  Response& res) {
        if (!ctx.jobs) return unavailable(res);
        std::string id = path_id(req);
        auto j = visible_job(*ctx.jobs, caller, id);
        if (!j.ok()) return send_error(res, j.error());
        json items = json::array();
        for (size_t i = 0; i < j->artifacts.size(); ++i) {
            struct stat st {};
            int64_t size = ::stat(ctx.jobs->artifact_path(id, i).c_str(), &st) == 0 ? st.st_size : 0;
            items.push_back({{"name", j->artifacts[i]}, {"size", size}});
        }
        send_json(res, 200, json{{"artifacts", items}});
    }));

    server.Get(one + "/artifacts/(.+)", authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req,
                                                                        Response& res) {
        if (!ctx.jobs) return unavailable(res);
        std::string id = path_id(req);
        std::string name = req.matches[2].str();
        auto j = visible_job(*ctx.jobs, caller, id);
        if (!j.ok()) return send_error(res, j.error());
        // The name is only looked up in the job's list; the file on the host is named by index.
        size_t index = j->artifacts.size();
        for (size_t i = 0; i < j->artifacts.size(); ++i)
            if (j->artifacts[i] == name) index = i;
        if (index == j->artifacts.size())
            return send_error(res, make_error(ErrorCode::NotFound, "job " + id + " has no artifact '" + name.substr(0, 200) + "'"));
        int f = ::open(ctx.jobs->artifact_path(id, index).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (f < 0) return send_error(res, make_error(ErrorCode::NotFound, "the artifact's file is gone"));
        auto fd = std::make_shared<UniqueFd>(f);
        struct stat st {};
        ::fstat(f, &st);
        res.status = 200;
        res.set_content_provider(static_cast<size_t>(st.st_size), "application/octet-stream",
                                 [fd](size_t offset, size_t length, DataSink& sink) {
                                     char buf[64 * 1024];
                                     ssize_t n = ::pread(fd->get(), buf, std::min(length, sizeof buf), static_cast<off_t>(offset));
                                     if (n <= 0) return false;
                                     return sink.write(buf, static_cast<size_t>(n));
                                 });
    }));
}

}  // namespace kiln::daemon::http
