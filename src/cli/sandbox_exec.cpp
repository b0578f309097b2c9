// `kiln sandbox exec`: runs a command in a sandbox, streaming its output (NDJSON exec), and exits with its status.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "cli/api_client.h"
#include "cli/output.h"
#include "cli/sandbox_commands.h"

namespace kiln::cli {
namespace {

using nlohmann::json;

// The exec body's stdin is a JSON string inside a JSON body that kilnd caps at 1 MiB.
constexpr size_t kMaxStdin = 768 * 1024;

struct ExecOptions {
    ApiOptions api;
    std::string id;
    double timeout_s = 0;
    std::vector<std::string> env;
    std::string cwd;
    bool force_stdin = false;
    bool no_stdin = false;
    std::vector<std::string> command;
    bool shell = false;  // the command is one shell string (given without "--")
};

Result<std::string> read_stdin() {
    std::string data;
    char buf[64 * 1024];
    for (;;) {
        ssize_t n = ::read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return make_error(ErrorCode::CliIo, std::string("reading stdin failed: ") + std::strerror(errno));
        if (n == 0) break;
        data.append(buf, static_cast<size_t>(n));
        if (data.size() > kMaxStdin)
            return make_error(ErrorCode::CliUsage,
                              "stdin is over 768 KiB; copy big inputs with `kiln sandbox cp` and redirect in the command");
    }
    try {
        (void)json(data).dump();
    } catch (const json::exception&) {
        return make_error(ErrorCode::CliUsage,
                          "stdin is not UTF-8 text; copy binary input with `kiln sandbox cp` and redirect in the command");
    }
    return data;
}

// The status kiln exits with for an exit event or a buffered ExecResult.
int exit_status(const json& result, double timeout_s) {
    if (result.value("timed_out", false)) {
        char secs[32];
        std::snprintf(secs, sizeof secs, "%g", timeout_s);
        print_error(timeout_s > 0 ? std::string("the command timed out after ") + secs + " s and was killed"
                                  : std::string("the command timed out (kilnd's default limit) and was killed"));
        return kExitTimeout;
    }
    if (result.contains("exit_code") && result["exit_code"].is_number_integer()) {
        int code = result["exit_code"].get<int>();
        return code >= 0 && code <= 255 ? code : kExitKilnError;
    }
    if (result.contains("signal") && result["signal"].is_number_integer()) {
        int sig = result["signal"].get<int>();
        if (sig > 0 && sig < 128) return 128 + sig;
    }
    print_error("kilnd reported neither an exit code nor a signal for the command");
    return kExitKilnError;
}

Result<int> sandbox_exec(ApiClient& client, const ExecOptions& o) {
    if (o.command.empty())
        return make_error(ErrorCode::CliUsage,
                          "sandbox exec: no command (usage: kiln sandbox exec ID -- CMD [ARG...], or ID 'shell string')");
    if (o.timeout_s < 0 || !std::isfinite(o.timeout_s))
        return make_error(ErrorCode::CliUsage, "sandbox exec: --timeout must be a positive number of seconds");
    std::string path = TRY(sandbox_path(o.id)) + "/exec";

    json body = json::object();
    if (o.shell)
        body["cmd"] = o.command[0];
    else
        body["argv"] = o.command;
    if (!o.env.empty()) {
        json env = json::object();
        for (const auto& [k, v] : TRY(parse_pairs(o.env, "--env"))) env[k] = v;
        body["env"] = env;
    }
    if (!o.cwd.empty()) body["cwd"] = o.cwd;
    if (o.timeout_s > 0) body["timeout_seconds"] = o.timeout_s;
    if (o.force_stdin || (!o.no_stdin && !::isatty(0))) body["stdin"] = TRY(read_stdin());
    // kilnd may stay silent for as long as the command runs (its default limit is 600 s).
    client.set_read_timeout(static_cast<int>(o.timeout_s > 0 ? o.timeout_s : 86400) + 60);

    if (o.api.json_output) {  // the buffered ExecResult, as kilnd sent it
        json result = TRY(client.call("POST", path, body));
        print_json(result);
        return exit_status(result, o.timeout_s);
    }

    std::optional<int> status;
    std::optional<Error> failure;
    bool stdout_gone = false;
    Status streamed = client.stream_ndjson(path, body, [&](const json& event) {
        std::string type = event.value("type", "");
        if (type == "stdout" || type == "stderr") {
            std::string data = event.contains("data") && event["data"].is_string() ? event["data"].get<std::string>() : "";
            if (type == "stdout" && !write_all(1, data)) {
                stdout_gone = true;  // like a shell pipeline: the reader left, so we stop too
                return false;
            }
            if (type == "stderr") (void)write_all(2, data);
        } else if (type == "start") {
            if (o.api.verbose) print_error("started, pid " + field(event, "pid") + " in the guest");
        } else if (type == "exit") {
            status = exit_status(event, o.timeout_s);
            if (event.value("truncated", false)) print_error("the command's output passed kilnd's cap and was cut");
            return false;
        } else if (type == "error") {
            const json& e = event.contains("error") && event["error"].is_object() ? event["error"] : json::object();
            failure = error_from_api(e);
            return false;
        }
        return true;  // unknown event types are for newer kilnds
    });
    if (stdout_gone) return 128 + SIGPIPE;
    if (failure) return *failure;
    if (!streamed.ok()) return streamed.error();
    if (!status)
        return make_error(ErrorCode::CliProtocol, "kilnd's exec stream ended before the command's exit event");
    return *status;
}

}  // namespace

void add_sandbox_exec_command(CLI::App& group, CliContext& ctx) {
    auto opts = std::make_shared<ExecOptions>();
    auto* e = group.add_subcommand("exec", "Run a command in a sandbox, stream its output, exit with its status");
    e->add_option("id", opts->id, "Sandbox id")->required();
    e->add_option("--timeout", opts->timeout_s, "Kill the command (its process group) after SECONDS (exit 124)");
    e->add_option("-e,--env", opts->env, "NAME=VALUE for the command's environment (repeatable)");
    e->add_option("-w,--cwd", opts->cwd, "Working directory in the sandbox");
    e->add_flag("--stdin", opts->force_stdin, "Send stdin even when it is a terminal");
    e->add_flag("--no-stdin", opts->no_stdin, "Do not send stdin (the default when stdin is a terminal)");
    add_api_options(e, opts->api);
    e->prefix_command();  // everything after the id is the command
    e->footer(
        "After '--' the command is an argv, run without a shell. Without '--', a single argument is a shell\n"
        "string run by /bin/sh -c: kiln sandbox exec ID 'make -j2 && make test'.\n"
        "Stdin, when it is not a terminal, is read to its end first and given to the command (text, at most 768 KiB).\n"
        "Exit status: the command's (128+N when signal N killed it); 124 on timeout; 125 when kiln or kilnd failed.\n"
        "--json prints kilnd's buffered ExecResult instead of streaming, and still exits with the command's status.");
    e->callback([opts, e, &ctx] {
        if (ctx.had_separator && !e->remaining().empty()) {
            print_error("sandbox exec: unexpected arguments before '--': " + e->remaining().front());
            ctx.exit_code = kExitKilnError;
            return;
        }
        opts->command = ctx.had_separator ? ctx.trailing_args : e->remaining();
        // One argument without "--" is a shell string (`kiln sandbox exec ID 'make && make test'`);
        // anything else is an argv, run without a shell.
        opts->shell = !ctx.had_separator && opts->command.size() == 1;
        ctx.exit_code = run_with_client(opts->api, [&](ApiClient& client) { return sandbox_exec(client, *opts); });
    });
}

}  // namespace kiln::cli
