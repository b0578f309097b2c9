// `kiln ci run <git URL or local path> [--sha SHA | --ref REF] [--follow JOB]`: queues a pipeline on
// kilnd, shows its jobs' states live (and one job's log: the one asked for, or the only one),
// exits 0 passed, 1 failed, 125 otherwise. `kiln ci pipelines` and `kiln ci pipeline ID` show them.
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/child_process.h"
#include "base/file_util.h"
#include "base/sha256.h"
#include "cli/api_client.h"
#include "cli/cli_context.h"
#include "cli/output.h"
#include "cli/pipeline_view.h"
#include "cli/signal_watcher.h"

namespace kiln::cli {
namespace {

using nlohmann::json;

struct CiRunOptions {
    ApiOptions api;
    std::string repo;
    std::string sha;
    std::string ref;
    std::string follow;  // a job's planned name or id: stream its log
};

struct CiListOptions {
    ApiOptions api;
    int limit = 20;
    std::string state;
};

Error local(ErrorCode code, const std::string& message) { return make_error(code, message); }

Result<std::string> git_out(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"env", "GIT_AUTHOR_NAME=kiln", "GIT_AUTHOR_EMAIL=kiln@localhost",
                                     "GIT_COMMITTER_NAME=kiln", "GIT_COMMITTER_EMAIL=kiln@localhost",
                                     // Fixed dates: the same files always give the same commit.
                                     "GIT_AUTHOR_DATE=2000-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2000-01-01T00:00:00Z",
                                     "git"};
    argv.insert(argv.end(), args.begin(), args.end());
    // The user's own git, run as them on their folder: their environment (HOME, their git config)
    // applies, as when they run git themselves.
    auto run = TRY(run_and_capture(argv, Millis(120000), 1 << 20, inherited_environment()));
    if (!run.status.success())
        return local(ErrorCode::CliGit, "git " + args.front() + " " + run.status.describe() + ": " + last_lines(run.output, 5));
    std::string out = run.output;
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
}

// A local folder that is not the top of a git work tree (e.g. examples/widget) is committed as it
// is now, .gitignore respected, into a scratch repository whose work tree is that folder; the job
// runs that commit. Same files, same commit (fixed author and dates, no parent).
Result<std::pair<std::string, std::string>> snapshot_folder(const std::string& dir) {
    const char* cache = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    std::string base = cache && *cache ? std::string(cache) : std::string(home && *home ? home : "/tmp") + "/.cache";
    std::string git_dir = base + "/kiln/ci-src/" + sha256_hex(dir).substr(0, 16) + ".git";
    std::error_code ec;
    std::filesystem::create_directories(base + "/kiln/ci-src", ec);
    if (!std::filesystem::exists(git_dir + "/HEAD")) TRY(git_out({"init", "-q", "--bare", git_dir}));
    TRY(git_out({"--git-dir=" + git_dir, "--work-tree=" + dir, "add", "-A", "."}));
    std::string tree = TRY(git_out({"--git-dir=" + git_dir, "write-tree"}));
    std::string commit = TRY(git_out({"--git-dir=" + git_dir, "commit-tree", tree, "-m", "kiln ci run: " + dir}));
    TRY(git_out({"--git-dir=" + git_dir, "update-ref", "refs/heads/main", commit}));
    return std::make_pair(git_dir, commit);
}

// What to send as {repo, sha, ref}: URLs as given; local paths made absolute, and folders that
// are not a repository's top level snapshotted (above).
Result<json> job_request(const CiRunOptions& o) {
    json body = {{"repo", o.repo}};
    if (!o.sha.empty()) body["sha"] = o.sha;
    if (!o.ref.empty()) body["ref"] = o.ref;
    if (o.repo.find("://") != std::string::npos) return body;
    std::error_code ec;
    std::string dir = std::filesystem::canonical(o.repo, ec).string();
    if (ec || !std::filesystem::is_directory(dir))
        return local(ErrorCode::CliUsage, o.repo + " is neither a git URL nor a folder");
    if (std::filesystem::exists(dir + "/.git") || std::filesystem::exists(dir + "/HEAD")) {
        body["repo"] = dir;  // a repository: its commits (HEAD by default), not uncommitted changes
        return body;
    }
    if (!o.sha.empty() || !o.ref.empty())
        return local(ErrorCode::CliUsage, dir + " is not a git repository, so --sha and --ref do not apply");
    auto [git_dir, commit] = TRY(snapshot_folder(dir));
    print_error(dir + " is not a git repository: running its current files as commit " + commit.substr(0, 12));
    body["repo"] = git_dir;
    body["sha"] = commit;
    return body;
}

std::string seconds(int64_t ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms) / 1000.0);
    return buf;
}

void show_event(const json& e) {
    std::string type = e.value("type", "");
    auto str = [&](const char* k) { return e.contains(k) && e[k].is_string() ? e[k].get<std::string>() : std::string(); };
    if (type == "output") {
        std::string data = str("data");
        if (str("stream") == "stderr") std::fwrite(data.data(), 1, data.size(), stderr);
        else std::fwrite(data.data(), 1, data.size(), stdout);
        std::fflush(str("stream") == "stderr" ? stderr : stdout);
    } else if (type == "attempt") {
        print_error("job attempt " + std::to_string(e.value("attempt", 0)) + ": " + str("repo") + " at " + str("sha"));
    } else if (type == "template") {
        std::string bake = str("bake");
        print_error("template " + str("template") + (bake == "none" ? std::string() : ", bake " + bake + " (key " + str("key") + ")"));
    } else if (type == "vm") {
        print_error("VM " + str("sandbox") + " ready");
    } else if (type == "checkout") {
        print_error("checked out " + str("sha"));
    } else if (type == "step_started") {
        print_error("==> " + str("step"));
    } else if (type == "step_finished") {
        std::string state = str("state");
        std::string detail = state == "failed" && e.contains("exit_code") ? " (exit " + e["exit_code"].dump() + ")" : "";
        print_error("<== " + str("step") + ": " + state + detail + " in " + seconds(e.value("duration_ms", int64_t(0))));
    } else if (type == "baked") {
        print_error("baked template saved as " + str("snapshot"));
    } else if (type == "warning" || type == "truncated" || type == "retry" || type == "interrupted") {
        print_error(type + ": " + str("message"));
    }
}

// Streams one job's log (show_event) on a thread of its own, with a client of its own, while the
// main thread watches the pipeline. The log ends when the job does.
class LogStream {
public:
    LogStream(ApiOptions api, std::string job_id)
        : m_thread([this, api = std::move(api), job_id = std::move(job_id)] { m_status = stream(api, job_id); }) {}
    ~LogStream() { (void)wait(); }
    Status wait() {
        if (m_thread.joinable()) m_thread.join();
        return m_status;
    }

private:
    static Status stream(const ApiOptions& api, const std::string& job_id) {
        auto client = TRY(ApiClient::create(api));
        client->set_read_timeout(24 * 3600);  // a bake can run long without a line
        // An event with a field of an unexpected type must not end the process from this thread.
        try {
            return client->stream_ndjson("/v1/jobs/" + job_id + "/logs", nullptr, [](const json& e) {
                if (e.is_object() && e.value("type", "") != "end") show_event(e);
                return true;
            }, "GET");
        } catch (const json::exception& e) {
            return local(ErrorCode::CliProtocol, std::string("job log event: ") + e.what());
        }
    }

    Status m_status = ok_status();
    std::thread m_thread;
};

// kilnd's Pipeline with the fields this command reads of the right types (so that reading them
// cannot throw), or a protocol error.
Result<json> checked_pipeline(json pipeline) {
    auto is_text = [](const json& o, const char* key) { return o.contains(key) && o[key].is_string(); };
    auto is_int = [](const json& o, const char* key) { return !o.contains(key) || o[key].is_number_integer(); };
    bool ok = pipeline.is_object() && is_text(pipeline, "id") && is_text(pipeline, "state") &&
              is_text(pipeline, "sha") && is_text(pipeline, "error") && is_int(pipeline, "duration_ms") &&
              pipeline.contains("jobs") && pipeline["jobs"].is_array() && !pipeline["jobs"].empty() &&
              pipeline["id"].get<std::string>().rfind("pipeline-", 0) == 0;
    for (const auto& job : ok ? pipeline["jobs"] : json::array())
        ok = ok && job.is_object() && is_text(job, "id") && is_text(job, "name") && is_text(job, "state") &&
             is_text(job, "error") && is_int(job, "duration_ms");
    if (!ok) return local(ErrorCode::CliProtocol, "kilnd answered a pipeline without its id, state or jobs");
    return pipeline;
}

bool pipeline_final(const json& pipeline) {
    std::string state = pipeline.value("state", "");
    return state != "queued" && state != "running";
}

// Planned: the jobs are named (or the pipeline ended before it could be).
bool pipeline_planned(const json& pipeline) {
    const json& jobs = pipeline["jobs"];
    return pipeline_final(pipeline) || jobs.size() > 1 || (jobs.size() == 1 && !jobs[0].value("name", "").empty());
}

std::vector<std::string> job_names(const json& pipeline) {
    std::vector<std::string> names;
    for (const auto& j : pipeline["jobs"]) names.push_back(j.value("name", ""));
    return names;
}

// Today's end of a one-job run: the JUnit summary and the job's state, duration and error.
void print_job_result(const json& job) {
    if (job.contains("junit") && job["junit"].is_object()) {
        const json& j = job["junit"];
        print_error("JUnit: " + j["tests"].dump() + " tests, " + j["failures"].dump() + " failures, " +
                    j["errors"].dump() + " errors, " + j["skipped"].dump() + " skipped");
    }
    std::string error = job.value("error", "");
    print_error("job " + job.value("id", "") + " " + job.value("state", "error") + " in " +
                seconds(job.value("duration_ms", int64_t(0))) + (error.empty() ? "" : ": " + error));
}

int exit_code_of(const json& pipeline) {
    std::string state = pipeline.value("state", "error");
    if (state == "passed") return 0;
    if (state == "failed") return 1;
    return kExitKilnError;
}

// The job lines go to stderr, redrawn in place when it is a terminal; to stdout when only that
// is one; plain lines on stderr otherwise.
PipelineView make_view(bool following) {
    if (following) return PipelineView(STDERR_FILENO, false);  // the log's lines come in between
    if (::isatty(STDERR_FILENO)) return PipelineView(STDERR_FILENO, true);
    if (::isatty(STDOUT_FILENO)) return PipelineView(STDOUT_FILENO, true);
    return PipelineView(STDERR_FILENO, false);
}

Result<int> ci_run(ApiClient& client, const CiRunOptions& o) {
    json body = TRY(job_request(o));
    json pipeline = TRY(checked_pipeline(TRY(client.call("POST", "/v1/pipelines", body))));
    std::string id = pipeline["id"];
    print_error("pipeline " + id + " queued (" + pipeline.value("sha", "") + ")");
    // The same page a commit status links to (docs/dashboard.md).
    print_error("dashboard: " + client.url() + "/ui/pipelines/" + id);

    // Ctrl-C cancels the pipeline (every job of it; their VMs are destroyed); we then watch it end.
    SignalWatcher signals;
    ApiOptions api = o.api;
    signals.set_handler([api, id](int) {
        auto c = ApiClient::create(api);
        if (c.ok()) (void)(*c)->call("POST", "/v1/pipelines/" + id + "/cancel");
        print_error("cancelling pipeline " + id);
    });

    std::unique_ptr<LogStream> log;
    std::optional<PipelineView> view;
    bool one_job = false;
    for (;;) {
        if (!view && pipeline_planned(pipeline)) {
            // Which log to show is known once the pipeline is planned: the job asked for, or the
            // only one (then the output is a one-job run's: its log and its result).
            one_job = pipeline["jobs"].size() == 1;
            json target = o.follow.empty() ? json(nullptr) : find_job(pipeline, o.follow);
            if (target.is_null() && one_job) {
                target = pipeline["jobs"][0];
            } else if (target.is_null() && !o.follow.empty()) {
                std::string names;
                for (const auto& n : job_names(pipeline)) names += (names.empty() ? "" : ", ") + n;
                print_error("warning: no job '" + o.follow + "' in pipeline " + id + " (its jobs: " + names + ")");
            }
            if (target.is_object()) {
                if (!one_job) print_error("following job " + target.value("name", "") + " (" + target.value("id", "") + ")");
                log = std::make_unique<LogStream>(o.api, target.value("id", ""));
            }
            view.emplace(make_view(log != nullptr));
        }
        if (view && !one_job) view->update(pipeline);
        if (pipeline_final(pipeline)) break;
        std::this_thread::sleep_for(std::chrono::seconds(1));
        pipeline = TRY(checked_pipeline(TRY(client.call("GET", "/v1/pipelines/" + id))));
    }
    if (log)
        if (auto st = log->wait(); !st.ok()) print_api_error(st.error());
    // The job lines came between the followed job's log: all of them once more, after it.
    if (log && !one_job) PipelineView(STDERR_FILENO, false).update(pipeline);

    if (o.api.json_output) print_json(pipeline);
    std::string error = pipeline.value("error", "");
    if (one_job) {
        print_job_result(pipeline["jobs"][0]);
        if (!error.empty() && pipeline["jobs"][0].value("error", "").empty()) print_error("pipeline " + id + ": " + error);
    } else {
        print_error("pipeline " + id + " " + pipeline.value("state", "error") + " in " +
                    seconds(pipeline.value("duration_ms", int64_t(0))) + ": " + job_counts(pipeline) +
                    (error.empty() ? "" : "; " + error));
    }
    return exit_code_of(pipeline);
}

// `kiln ci pipelines`: the caller's pipelines (every one with ci:read), newest first.
Result<int> ci_pipelines(ApiClient& client, const CiListOptions& o) {
    std::string path = "/v1/pipelines?limit=" + std::to_string(o.limit);
    if (!o.state.empty()) path += "&state=" + url_encode(o.state);
    json answer = TRY(client.call("GET", path));
    if (o.api.json_output) {
        print_json(answer);
        return 0;
    }
    if (!answer.contains("pipelines") || !answer["pipelines"].is_array())
        return local(ErrorCode::CliProtocol, "kilnd's pipeline list has no pipelines array");
    std::vector<std::vector<std::string>> rows = {{"ID", "STATE", "JOBS", "REPO", "SHA", "CREATED"}};
    for (const auto& p : answer["pipelines"])
        rows.push_back({field(p, "id"), field(p, "state"), job_counts(p), field(p, "repo"), field(p, "sha").substr(0, 12),
                        relative_time(field(p, "created_at"))});
    print_out(format_table(rows));
    return 0;
}

// `kiln ci pipeline ID`: one pipeline, a line per job.
Result<int> ci_pipeline(ApiClient& client, const ApiOptions& api, const std::string& id) {
    if (id.empty() || id.find_first_of("/?#%") != std::string::npos || id == "." || id == "..")
        return local(ErrorCode::CliUsage, "'" + id + "' is not a pipeline id");
    json p = TRY(client.call("GET", "/v1/pipelines/" + url_encode(id)));
    if (api.json_output) {
        print_json(p);
        return 0;
    }
    std::string error = field(p, "error");
    print_out("pipeline " + field(p, "id") + " " + field(p, "state") + ": " + field(p, "repo") + " at " +
              field(p, "sha") + (error.empty() || error == "-" ? "" : "; " + error) + "\n");
    PipelineView(STDOUT_FILENO, false).update(p);
    return 0;
}

}  // namespace

void add_ci_commands(CLI::App& app, CliContext& ctx) {
    auto* group = app.add_subcommand("ci", "CI jobs on kilnd: a repository's .kiln.yml in a fresh VM");
    group->require_subcommand(1);
    auto o = std::make_shared<CiRunOptions>();
    auto* run = group->add_subcommand("run", "Queue a pipeline, show its jobs live (and a job's log), print the results");
    run->add_option("repo", o->repo, "A git URL (under kilnd's ci_repos), or a local folder (a repository, or any folder: its current files; needs an admin token)")
        ->required();
    auto* sha = run->add_option("--sha", o->sha, "The exact commit (40 hex digits)");
    run->add_option("--ref", o->ref, "A branch or tag, resolved to a commit by the worker that takes the job (default HEAD)")->excludes(sha);
    run->add_option("--follow", o->follow, "Stream this job's log (its name, e.g. 'test (18)', or its id); a pipeline of one job is followed anyway");
    add_api_options(run, o->api);
    run->footer("Exit status: 0 passed, 1 failed, 125 error or cancelled (or kiln itself failed).");
    run->callback([o, &ctx] {
        ctx.exit_code = run_with_client(o->api, [&](ApiClient& client) { return ci_run(client, *o); });
    });

    auto list = std::make_shared<CiListOptions>();
    auto* ls = group->add_subcommand("pipelines", "List pipelines, newest first (yours; every one with ci:read)");
    ls->add_option("--limit", list->limit, "At most this many (1-1000)")->check(CLI::Range(1, 1000));
    ls->add_option("--state", list->state, "Only pipelines in this state (queued, running, passed, failed, error, cancelled)");
    add_api_options(ls, list->api);
    ls->callback([list, &ctx] {
        ctx.exit_code = run_with_client(list->api, [&](ApiClient& client) { return ci_pipelines(client, *list); });
    });

    auto one_api = std::make_shared<ApiOptions>();
    auto one_id = std::make_shared<std::string>();
    auto* one = group->add_subcommand("pipeline", "Show one pipeline: a line per job");
    one->add_option("id", *one_id, "The pipeline's id (pipeline-...)")->required();
    add_api_options(one, *one_api);
    one->callback([one_api, one_id, &ctx] {
        ctx.exit_code = run_with_client(*one_api, [&](ApiClient& client) { return ci_pipeline(client, *one_api, *one_id); });
    });
}

}  // namespace kiln::cli
