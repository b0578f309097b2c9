// `kiln ci run <git URL or local path> [--sha SHA | --ref REF]`: queues a CI job on kilnd,
// follows its log live, prints the JUnit summary; exits 0 passed, 1 failed, 125 otherwise.
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "base/child_process.h"
#include "base/file_util.h"
#include "base/sha256.h"
#include "cli/api_client.h"
#include "cli/cli_context.h"
#include "cli/output.h"
#include "cli/signal_watcher.h"

namespace kiln::cli {
namespace {

using nlohmann::json;

struct CiRunOptions {
    ApiOptions api;
    std::string repo;
    std::string sha;
    std::string ref;
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

Result<int> ci_run(ApiClient& client, const CiRunOptions& o) {
    json body = TRY(job_request(o));
    json job = TRY(client.call("POST", "/v1/jobs", body));
    std::string id = job.value("id", "");
    if (id.rfind("job-", 0) != 0) return local(ErrorCode::CliProtocol, "kilnd answered the job without an id");
    print_error("job " + id + " queued (" + job.value("sha", "") + ")");

    // Ctrl-C cancels the job (its VM is destroyed); the log then ends with the job.
    SignalWatcher signals;
    ApiOptions api = o.api;
    signals.set_handler([api, id](int) {
        auto c = ApiClient::create(api);
        if (c.ok()) (void)(*c)->call("POST", "/v1/jobs/" + id + "/cancel");
        print_error("cancelling job " + id);
    });
    client.set_read_timeout(24 * 3600);  // a bake can run long without a line
    json end;
    auto st = client.stream_ndjson("/v1/jobs/" + id + "/logs", nullptr, [&](const json& e) {
        if (e.value("type", "") == "end") end = e;
        else show_event(e);
        return true;
    }, "GET");
    if (!st.ok()) return st.error();
    json final_job = TRY(client.call("GET", "/v1/jobs/" + id));
    if (o.api.json_output) print_json(final_job);
    std::string state = final_job.value("state", "error");
    if (final_job.contains("junit") && final_job["junit"].is_object()) {
        const json& j = final_job["junit"];
        print_error("JUnit: " + j["tests"].dump() + " tests, " + j["failures"].dump() + " failures, " +
                    j["errors"].dump() + " errors, " + j["skipped"].dump() + " skipped");
    }
    std::string error = final_job.value("error", "");
    print_error("job " + id + " " + state + " in " + seconds(final_job.value("duration_ms", int64_t(0))) +
                (error.empty() ? "" : ": " + error));
    if (state == "passed") return 0;
    if (state == "failed") return 1;
    return kExitKilnError;
}

}  // namespace

void add_ci_commands(CLI::App& app, CliContext& ctx) {
    auto* group = app.add_subcommand("ci", "CI jobs on kilnd: a repository's .kiln.yml in a fresh VM");
    group->require_subcommand(1);
    auto o = std::make_shared<CiRunOptions>();
    auto* run = group->add_subcommand("run", "Queue a job, follow its log, print the JUnit summary");
    run->add_option("repo", o->repo, "A git URL (under kilnd's ci_repos), or a local folder (a repository, or any folder: its current files; needs an admin token)")
        ->required();
    auto* sha = run->add_option("--sha", o->sha, "The exact commit (40 hex digits)");
    run->add_option("--ref", o->ref, "A branch or tag, resolved to a commit by the worker that takes the job (default HEAD)")->excludes(sha);
    add_api_options(run, o->api);
    run->footer("Exit status: 0 passed, 1 failed, 125 error or cancelled (or kiln itself failed).");
    run->callback([o, &ctx] {
        ctx.exit_code = run_with_client(o->api, [&](ApiClient& client) { return ci_run(client, *o); });
    });
}

}  // namespace kiln::cli
