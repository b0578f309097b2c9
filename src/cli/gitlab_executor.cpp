// `kiln gitlab-executor config|prepare|run|cleanup`: GitLab Runner's custom executor protocol over
// kilnd's API. One sandbox per GitLab job: prepare creates it, run executes each sub-stage's
// script in it, cleanup deletes it. See docs/gitlab.md.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "base/unique_fd.h"
#include "cli/api_client.h"
#include "cli/cli_context.h"
#include "cli/output.h"

namespace kiln::cli {
namespace {

using nlohmann::json;

struct ExecutorOptions {
    ApiOptions api;
    std::string state_dir;  // --state-dir, $KILN_GITLAB_STATE_DIR
    std::string template_name;  // --template, $KILN_GITLAB_TEMPLATE (a job's KILN_TEMPLATE variable wins)
    std::string builds_dir = "/builds";
    std::string cache_dir = "/cache";
    std::string script;  // run: the script runner wrote on the host
    std::string stage;   // run: the sub-stage name
};

std::string env(const char* name, const std::string& fallback = "") {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : fallback;
}

// The exit codes runner told us to use (its environment, not the job's); 1 and 2 when run by hand.
int exit_code_from_env(const char* name, int fallback) {
    std::string v = env(name);
    char* end = nullptr;
    long n = v.empty() ? -1 : std::strtol(v.c_str(), &end, 10);
    return (n >= 0 && n <= 255 && end && *end == '\0') ? static_cast<int>(n) : fallback;
}
int build_failure() { return exit_code_from_env("BUILD_FAILURE_EXIT_CODE", 1); }
int system_failure() { return exit_code_from_env("SYSTEM_FAILURE_EXIT_CODE", 2); }

// What every stage prints before giving up: runner shows it in the job log.
int fail_system(const std::string& stage, const Error& e) {
    std::string code = is_cli_local(e.code) ? "" : std::string(code_name(e.code)) + ": ";
    std::fprintf(stderr, "kiln gitlab-executor %s: %s%s\n", stage.c_str(), code.c_str(), e.message.c_str());
    return system_failure();
}

Error local(ErrorCode code, const std::string& message) { return make_error(code, message); }

std::string state_dir(const ExecutorOptions& o) {
    if (!o.state_dir.empty()) return o.state_dir;
    std::string d = env("KILN_GITLAB_STATE_DIR");
    if (!d.empty()) return d;
    return "/tmp/kiln-gitlab-executor-" + std::to_string(::getuid());
}

// CUSTOM_ENV_CI_JOB_ID, digits only: it names the state file.
Result<std::string> job_id() {
    std::string id = env("CUSTOM_ENV_CI_JOB_ID");
    if (id.empty() || id.size() > 20 || id.find_first_not_of("0123456789") != std::string::npos)
        return local(ErrorCode::CliUsage, "CUSTOM_ENV_CI_JOB_ID is missing or not a number (is GitLab Runner calling?)");
    return id;
}

// The state directory is ours alone (0700, owned by us), so nobody can plant or read state files.
Result<std::string> state_file(const ExecutorOptions& o, const std::string& id, bool create_dir) {
    std::string dir = state_dir(o);
    if (create_dir && ::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
        return local(ErrorCode::CliIo, "cannot create state dir " + dir + ": " + std::strerror(errno));
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0) return local(ErrorCode::CliIo, "state dir " + dir + ": " + std::strerror(errno));
    if (!S_ISDIR(st.st_mode) || st.st_uid != ::getuid() || (st.st_mode & 077) != 0)
        return local(ErrorCode::CliIo, "state dir " + dir + " must be a directory of ours with mode 0700");
    return dir + "/job-" + id + ".json";
}

Result<json> read_state(const ExecutorOptions& o) {
    std::string id = TRY(job_id());
    std::string path = TRY(state_file(o, id, false));
    std::ifstream in(path);
    if (!in) return local(ErrorCode::CliUsage, "no sandbox recorded for job " + id + " (" + path + "): did prepare run?");
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("sandbox_id") || !j["sandbox_id"].is_string())
        return local(ErrorCode::CliIo, "state file " + path + " is damaged");
    return j;
}

Status write_state(const std::string& path, const json& state) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << state.dump() << "\n";
        if (!out.flush()) return local(ErrorCode::CliIo, "cannot write " + tmp);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) return local(ErrorCode::CliIo, "cannot write " + path + ": " + std::strerror(errno));
    return ok_status();
}

// A GitLab job's timeout in seconds (CUSTOM_ENV_CI_JOB_TIMEOUT), else an hour.
int64_t job_timeout() {
    std::string v = env("CUSTOM_ENV_CI_JOB_TIMEOUT");
    char* end = nullptr;
    long long n = v.empty() ? 0 : std::strtoll(v.c_str(), &end, 10);
    return (n > 0 && end && *end == '\0') ? n : 3600;
}

// Metadata values are at most 256 bytes (api/openapi.yaml).
void put_meta(json& meta, const char* key, const std::string& value) {
    if (!value.empty()) meta[key] = value.substr(0, 256);
}

// Runs one command in the sandbox, streaming its output to ours; the exit event, or an error when
// kilnd or the sandbox failed (never the command's own failure).
Result<json> exec_streaming(ApiClient& client, const std::string& sandbox_path, const json& body) {
    std::optional<json> exit_event;
    std::optional<Error> failure;
    Status streamed = client.stream_ndjson(sandbox_path + "/exec", body, [&](const json& event) {
        std::string type = event.value("type", "");
        if (type == "stdout" || type == "stderr") {
            std::string data = event.contains("data") && event["data"].is_string() ? event["data"].get<std::string>() : "";
            std::fwrite(data.data(), 1, data.size(), type == "stdout" ? stdout : stderr);
            std::fflush(type == "stdout" ? stdout : stderr);
        } else if (type == "exit") {
            exit_event = event;
            return false;
        } else if (type == "error") {
            const json& e = event.contains("error") && event["error"].is_object() ? event["error"] : json::object();
            failure = error_from_api(e);
            return false;
        }
        return true;
    });
    if (failure) return *failure;
    if (!streamed.ok()) return streamed.error();
    if (!exit_event) return local(ErrorCode::CliProtocol, "kilnd's exec stream ended before the command's exit event");
    return *exit_event;
}

int run_config(const ExecutorOptions& o) {
    json config = {
        {"driver", {{"name", "kiln"}, {"version", KILN_VERSION}}},
        {"builds_dir", o.builds_dir},
        {"cache_dir", o.cache_dir},
        {"builds_dir_is_shared", false},  // one fresh VM per job
        {"hostname", "kiln-sandbox"},
        {"job_env", {{"KILN_SANDBOX", "1"}}},
    };
    std::printf("%s\n", config.dump().c_str());
    return 0;
}

Result<int> run_prepare(ApiClient& client, const ExecutorOptions& o) {
    std::string id = TRY(job_id());
    std::string path = TRY(state_file(o, id, true));
    // A job's own KILN_TEMPLATE variable, then the runner's configuration, then base.
    std::string tmpl = env("CUSTOM_ENV_KILN_TEMPLATE", o.template_name.empty() ? env("KILN_GITLAB_TEMPLATE", "base")
                                                                               : o.template_name);
    json meta = json::object();
    put_meta(meta, "gitlab_job_id", id);
    put_meta(meta, "gitlab_project", env("CUSTOM_ENV_CI_PROJECT_PATH"));
    put_meta(meta, "gitlab_pipeline_id", env("CUSTOM_ENV_CI_PIPELINE_ID"));
    put_meta(meta, "gitlab_job_name", env("CUSTOM_ENV_CI_JOB_NAME"));
    // The sandbox outlives the job's timeout by a margin, so a runner that dies before cleanup
    // leaves nothing running for long.
    json body = {{"template", tmpl}, {"ttl_seconds", job_timeout() + 600}, {"metadata", meta}};
    std::printf("Creating a kiln sandbox from template %s...\n", tmpl.c_str());
    std::fflush(stdout);
    json sandbox = TRY(client.call("POST", "/v1/sandboxes", body));
    std::string sandbox_id = sandbox.value("id", "");
    std::string sb_path = TRY(sandbox_path(sandbox_id));
    // Record it first: whatever fails next, cleanup finds the sandbox and deletes it.
    TRY(write_state(path, json{{"sandbox_id", sandbox_id}, {"url", client.url()}}));

    json mkdirs = {{"argv", {"mkdir", "-p", o.builds_dir, o.cache_dir}}};
    json done = TRY(client.call("POST", sb_path + "/exec", mkdirs));
    if (done.value("exit_code", json()) != json(0))
        return local(ErrorCode::CliIo, "could not create " + o.builds_dir + " and " + o.cache_dir + " in the sandbox: " +
                                    (done.value("stderr_encoding", "utf-8") == "utf-8"
                                         ? done.value("stderr", std::string())
                                         : std::string("(its stderr is binary)")));
    std::printf("Running in kiln sandbox %s (template %s)\n", sandbox_id.c_str(), tmpl.c_str());
    // Where a person watches it: the dashboard's sandboxes page, this sandbox marked (docs/dashboard.md).
    std::printf("Kiln dashboard: %s/ui/sandboxes?id=%s\n", client.url().c_str(), sandbox_id.c_str());
    return 0;
}

Result<int> run_run(ApiClient& client, const ExecutorOptions& o) {
    if (o.stage.empty() || o.stage.size() > 64 ||
        o.stage.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != std::string::npos)
        return local(ErrorCode::CliUsage, "the sub-stage name '" + o.stage + "' is not one runner sends");
    json state = TRY(read_state(o));
    std::string sb_path = TRY(sandbox_path(state["sandbox_id"].get<std::string>()));

    UniqueFd fd(::open(o.script.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return local(ErrorCode::CliIo, "cannot open the script " + o.script + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return local(ErrorCode::CliIo, o.script + " is not a file");
    std::string guest_script = "/tmp/kiln-gitlab/" + o.stage + ".sh";
    TRY(client.upload("PUT", sb_path + "/files?path=" + url_encode(guest_script) + "&mode=0700",
                      "application/octet-stream", fd.get(), static_cast<uint64_t>(st.st_size)));

    // Runner writes its scripts for bash (the custom executor's default shell); a template
    // without bash gets the POSIX shell.
    json body = {{"argv", {"/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash \"$0\"; fi; exec sh \"$0\"",
                           guest_script}},
                 {"timeout_seconds", job_timeout()}};
    client.set_read_timeout(static_cast<int>(job_timeout()) + 60);
    json exit_event = TRY(exec_streaming(client, sb_path, body));
    (void)client.call("DELETE", sb_path + "/files?path=" + url_encode(guest_script));

    if (exit_event.value("timed_out", false)) {
        std::fprintf(stderr, "kiln: the %s script ran past the job timeout (%lld s) and was killed\n", o.stage.c_str(),
                     static_cast<long long>(job_timeout()));
        return build_failure();
    }
    int code = -1;
    if (exit_event.contains("exit_code") && exit_event["exit_code"].is_number_integer()) code = exit_event["exit_code"].get<int>();
    else if (exit_event.contains("signal") && exit_event["signal"].is_number_integer()) code = 128 + exit_event["signal"].get<int>();
    if (code == 0) return 0;
    // Newer runners read the script's own exit code from this file (allow_failure: exit_codes).
    std::string code_file = env("BUILD_EXIT_CODE_FILE");
    if (!code_file.empty() && code > 0) {
        std::ofstream out(code_file, std::ios::trunc);
        out << code << "\n";
    }
    return build_failure();
}

Result<int> run_cleanup(ApiClient& client, const ExecutorOptions& o) {
    std::string id = TRY(job_id());
    auto state = read_state(o);
    if (!state.ok()) {
        // prepare failed before it created anything: nothing to clean up.
        std::fprintf(stderr, "kiln gitlab-executor cleanup: %s\n", state.error().message.c_str());
        return 0;
    }
    std::string sandbox_id = (*state)["sandbox_id"].get<std::string>();
    auto deleted = client.call("DELETE", TRY(sandbox_path(sandbox_id)));
    if (!deleted.ok() && deleted.error().code != ErrorCode::NotFound) return deleted.error();
    std::string path = TRY(state_file(o, id, false));
    ::unlink(path.c_str());
    std::printf("Deleted kiln sandbox %s\n", sandbox_id.c_str());
    return 0;
}

// Runs a stage that talks to kilnd; any failure of kiln or kilnd is a system failure.
int with_client(const char* stage, const ExecutorOptions& o,
                const std::function<Result<int>(ApiClient&)>& body) {
    auto client = ApiClient::create(o.api);
    if (!client.ok()) return fail_system(stage, client.error());
    auto code = body(**client);
    if (!code.ok()) return fail_system(stage, code.error());
    return *code;
}

}  // namespace

void add_gitlab_executor_command(CLI::App& app, CliContext& ctx) {
    auto o = std::make_shared<ExecutorOptions>();
    auto* g = app.add_subcommand("gitlab-executor", "GitLab Runner custom executor: one fresh kiln sandbox per job");
    g->require_subcommand(1);
    g->footer("Configure runner with config_exec/prepare_exec/run_exec/cleanup_exec = kiln and\n"
              "config_args = [\"gitlab-executor\", \"config\"] and so on (docs/gitlab.md).");
    auto add_common = [o](CLI::App* c) {
        c->add_option("--url", o->api.url, "kilnd URL (default $KILN_URL or http://127.0.0.1:7070)");
        c->add_option("--token", o->api.token, "API token (default $KILN_TOKEN)");
        c->add_option("--state-dir", o->state_dir, "where job -> sandbox ids are kept (default $KILN_GITLAB_STATE_DIR)");
    };
    auto* config = g->add_subcommand("config", "print the executor's configuration JSON for runner");
    config->add_option("--builds-dir", o->builds_dir, "builds_dir in the sandbox");
    config->add_option("--cache-dir", o->cache_dir, "cache_dir in the sandbox");
    config->callback([o, &ctx] { ctx.exit_code = run_config(*o); });

    auto* prepare = g->add_subcommand("prepare", "create the job's sandbox");
    add_common(prepare);
    prepare->add_option("--template", o->template_name, "template (default $KILN_GITLAB_TEMPLATE or base; the job's KILN_TEMPLATE wins)");
    prepare->add_option("--builds-dir", o->builds_dir, "builds_dir in the sandbox (as config printed)");
    prepare->add_option("--cache-dir", o->cache_dir, "cache_dir in the sandbox (as config printed)");
    prepare->callback([o, &ctx] { ctx.exit_code = with_client("prepare", *o, [&](ApiClient& c) { return run_prepare(c, *o); }); });

    auto* run = g->add_subcommand("run", "run one sub-stage's script in the job's sandbox");
    add_common(run);
    run->add_option("script", o->script, "the script runner wrote")->required();
    run->add_option("stage", o->stage, "the sub-stage (prepare_script, get_sources, step_script, ...)")->required();
    run->callback([o, &ctx] { ctx.exit_code = with_client("run", *o, [&](ApiClient& c) { return run_run(c, *o); }); });

    auto* cleanup = g->add_subcommand("cleanup", "delete the job's sandbox");
    add_common(cleanup);
    cleanup->callback([o, &ctx] { ctx.exit_code = with_client("cleanup", *o, [&](ApiClient& c) { return run_cleanup(c, *o); }); });
}

}  // namespace kiln::cli
