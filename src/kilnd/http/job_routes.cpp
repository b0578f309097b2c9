// /v1/jobs: queue, list, get and cancel CI jobs, follow their logs (NDJSON), list and download
// their artifacts. The jobs themselves are src/ci/jobs (docs/ci.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "base/clock.h"
#include "base/unique_fd.h"
#include "ci/jobs/job_service.h"
#include "ci/jobs/job_state.h"
#include "kilnd/http/ci_route_helpers.h"
#include "kilnd/http/file_stream.h"
#include "kilnd/http/job_files_host.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

namespace {

constexpr size_t kLogChunk = 256 * 1024;

// Follows the log file: whole lines as they are appended, until the job is final and read out.
struct LogFollower {
    ci::JobService* jobs;
    std::string id;
    std::string path;
    std::string self;  // this host's name ("": one host)
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
    auto unavailable = [](Response& res) { send_error(res, no_ci_jobs()); };

    server.Post("/v1/jobs", authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req,
                                                           Response& res) {
        if (!ctx.jobs) return unavailable(res);
        if (!caller.has(Scope::CiSubmit) && !caller.has(Scope::CiTrusted))
            return send_error(res, make_error(ErrorCode::Forbidden, "queueing a job needs the ci:submit or ci:trusted scope"));
        if (auto st = check_body_size(req, ctx.config.max_json_body); !st.ok()) return send_error(res, st.error());
        auto spec = parse_submission(req.body, caller);
        if (!spec.ok()) return send_error(res, spec.error());
        if (auto st = check_queued_jobs_quota(*ctx.jobs, caller); !st.ok()) return send_error(res, st.error());
        auto job = ctx.jobs->submit(*spec);
        if (!job.ok()) return send_error(res, job.error());
        send_json(res, 201, render_job(*job));
    }));

    server.Get("/v1/jobs", authed(ctx, kCiScopes, [&ctx, unavailable](const Caller& caller, const Request& req,
                                                          Response& res) {
        if (!ctx.jobs) return unavailable(res);
        static const std::vector<std::string> kStates = [] {
            std::vector<std::string> names;
            for (auto st : {ci::JobState::Queued, ci::JobState::Running, ci::JobState::Passed, ci::JobState::Failed,
                            ci::JobState::Error, ci::JobState::Cancelled, ci::JobState::Waiting, ci::JobState::Skipped})
                names.push_back(ci::job_state_name(st));
            return names;
        }();
        auto query = parse_list_query(req, kStates);
        if (!query.ok()) return send_error(res, query.error());
        // One page from the store (ListPage: filtered and ordered there, never the whole table).
        auto page = ctx.jobs->list_page(list_page_of(*query, caller));
        if (!page.ok()) return send_error(res, page.error());
        json items = json::array();
        for (const auto& j : *page) items.push_back(render_job(j));
        send_json(res, 200, page_json("jobs", std::move(items), query->limit));
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
        if (auto st = check_may_cancel(caller, j->spec, "job"); !st.ok()) return send_error(res, st.error());
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
        if (auto here = job_files_here(ctx, *j); !here.ok()) return send_error(res, here.error());
        auto follower = std::make_shared<LogFollower>();
        follower->jobs = ctx.jobs;
        follower->id = id;
        follower->path = ctx.jobs->log_path(id);
        follower->self = this_host(ctx);
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
            std::string moved_to;  // another host claimed the job: the rest of its log is written there
            if (follower->follow) {
                auto j = follower->jobs->get(follower->id);
                final_now = !j.ok() || ci::is_final(j->state);
                if (j.ok() && !follower->self.empty() && !j->host.empty() && j->host != follower->self) moved_to = j->host;
            }
            std::string lines;
            size_t n = follower->read_new(lines);
            if (!lines.empty()) return sink.write(lines.data(), lines.size());
            if (n == 0 && !moved_to.empty()) {
                // One last event saying where the log goes on, instead of waiting here for lines
                // that are written on that host (docs/ci.md, "Several hosts").
                std::string line = json{{"type", "elsewhere"}, {"ts", now_unix_ms()}, {"host", moved_to},
                                        {"message", "the job runs on host " + moved_to + ": its log goes on there"}}.dump() + "\n";
                sink.write(line.data(), line.size());
                sink.done();
                return true;
            }
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
        if (auto here = job_files_here(ctx, *j); !here.ok()) return send_error(res, here.error());
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
        if (auto here = job_files_here(ctx, *j); !here.ok()) return send_error(res, here.error());
        // The name is only looked up in the job's list; the file on the host is named by index.
        size_t index = j->artifacts.size();
        for (size_t i = 0; i < j->artifacts.size(); ++i)
            if (j->artifacts[i] == name) index = i;
        if (index == j->artifacts.size())
            return send_error(res, make_error(ErrorCode::NotFound, "job " + id + " has no artifact '" + name.substr(0, 200) + "'"));
        if (auto st = stream_file(res, ctx.jobs->artifact_path(id, index)); !st.ok())
            return send_error(res, make_error(ErrorCode::NotFound, "the artifact's file is gone"));
    }));
}

}  // namespace kiln::daemon::http
