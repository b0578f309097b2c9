#include "kilnd/e2b/envd_process.h"

#include <signal.h>

#include "base/base64.h"
#include "kilnd/e2b/connect_route.h"
#include "kilnd/e2b/envd_errors.h"
#include "kilnd/e2b/envd_messages.h"
#include "kilnd/e2b/envd_process_table.h"
#include "vm/agent_client.h"

namespace kiln::daemon::e2b {

namespace {

constexpr std::chrono::milliseconds kPoll{1000};
// A quiet stream gets a keepalive event now and then, so that proxies and the SDK see it alive.
constexpr int kKeepAliveEveryPolls = 30;

json event(const char* kind, json body) { return json{{"event", {{kind, std::move(body)}}}}; }

json end_event(const ProcessOutput& end) {
    json body = json::object();
    if (end.result) {
        const auto& r = *end.result;
        if (r.signal) {
            body["exitCode"] = -1;
            body["exited"] = false;
            body["status"] = std::string("signal: ") + (r.signal == SIGKILL ? "killed" : strsignal(r.signal));
        } else {
            body["exitCode"] = r.exit_code;
            body["exited"] = true;
            body["status"] = "exit status " + std::to_string(r.exit_code);
        }
        if (r.timed_out) body["error"] = "the command timed out";
    } else {
        body["exitCode"] = -1;
        body["exited"] = false;
        body["status"] = "error";
        body["error"] = end.error ? end.error->message : std::string("the command failed");
    }
    return event("end", body);
}

json config_json(const ProcessConfig& c) {
    json j{{"cmd", c.cmd}, {"args", c.args}, {"envs", c.envs}};
    if (c.cwd) j["cwd"] = *c.cwd;
    return j;
}

// The exec a Start asks for: argv as given (the SDK sends /bin/bash -l -c <cmd>), the
// sandbox's environment under the call's, in the user's home unless cwd says otherwise.
proto::ExecRequest exec_request(const EnvdCall& call, const StartRequest& start) {
    proto::ExecRequest r;
    r.argv.push_back(start.process.cmd);
    r.argv.insert(r.argv.end(), start.process.args.begin(), start.process.args.end());
    Labels env = call.lease->info().env;
    for (const auto& [k, v] : start.process.envs) env[k] = v;
    r.env = std::move(env);
    r.output_limit = proto::kUnlimitedOutput;  // a background server runs for long; watchers cap what they keep
    // The agent runs commands as root until it can switch to a named user (docs/e2b.md); the
    // user still picks the home and the default working directory.
    r.env.emplace("USER", call.user);
    r.env.emplace("HOME", home_of(call.user));
    r.cwd = start.process.cwd ? *start.process.cwd : "/";
    if (start.process.cwd && !start.process.cwd->empty() && (*start.process.cwd)[0] != '/')
        r.cwd = home_of(call.user) + "/" + *start.process.cwd;
    return r;
}

// Streams `process`'s events from `watch` until its end or the client leaves (the process goes
// on). `announce`: send a start event first (Connect's stream begins with one too).
std::optional<ConnectError> follow(const std::shared_ptr<RunningProcess>& process, const std::shared_ptr<ProcessWatch>& watch,
                                   ConnectStream& stream, bool announce_now, const std::string& request_id) {
    if (announce_now && !stream.send(event("start", {{"pid", process->pid()}}))) {
        process->unwatch(watch);
        return std::nullopt;
    }
    int quiet = 0;
    for (;;) {
        auto next = watch->next(kPoll);
        if (!next) {
            if (stream.client_gone()) break;
            if (++quiet % kKeepAliveEveryPolls == 0 && !stream.send(event("keepalive", json::object()))) break;
            continue;
        }
        quiet = 0;
        bool sent = true;
        switch (next->kind) {
        case ProcessOutput::Kind::Start: sent = stream.send(event("start", {{"pid", process->pid()}})); break;
        case ProcessOutput::Kind::Stdout: sent = stream.send(event("data", {{"stdout", base64_encode(next->data)}})); break;
        case ProcessOutput::Kind::Stderr: sent = stream.send(event("data", {{"stderr", base64_encode(next->data)}})); break;
        case ProcessOutput::Kind::End:
            process->unwatch(watch);
            // An exec that never started (no such cwd, the sandbox went away) is the call's error.
            if (!next->result && next->error && process->pid() == 0) return to_connect_error(*next->error, request_id);
            stream.send(end_event(*next));
            return std::nullopt;
        }
        if (!sent) break;
    }
    process->unwatch(watch);
    return std::nullopt;
}

std::shared_ptr<RunningProcess> find(const ProcessTable& table, const EnvdCall& call, const ProcessSelector& sel) {
    return sel.pid ? table.by_pid(call.target.sandbox_id, static_cast<int>(*sel.pid))
                   : table.by_tag(call.target.sandbox_id, *sel.tag);
}

ConnectError no_process(const ProcessSelector& sel) {
    return ConnectError{ConnectCode::NotFound, sel.pid ? "process with pid " + std::to_string(*sel.pid) + " not found"
                                                       : "process with tag '" + sel.tag->substr(0, 256) + "' not found"};
}

}  // namespace

void add_process_service(http::Router& router, EnvdContext& ctx) {
    auto table = std::make_shared<ProcessTable>();

    add_stream_call(router, ctx, "/process.Process/Start", [table](EnvdCall& call, ConnectStream& stream) -> std::optional<ConnectError> {
        auto start = parse_start_request(call.message);
        if (!start.ok()) return start.error;
        auto process = std::make_shared<RunningProcess>(call.target.sandbox_id, start.value->process, start.value->tag,
                                                        start.value->stdin);
        auto watch = process->watch();
        table->launch(call.lease, process, exec_request(call, *start.value));
        return follow(process, watch, stream, false, call.request_id);
    });

    add_stream_call(router, ctx, "/process.Process/Connect", [table](EnvdCall& call, ConnectStream& stream) -> std::optional<ConnectError> {
        auto sel = parse_selector(call.message);
        if (!sel.ok()) return sel.error;
        auto process = find(*table, call, *sel.value);
        if (!process) return no_process(*sel.value);
        return follow(process, process->watch(), stream, true, call.request_id);
    });

    add_unary_call(router, ctx, "/process.Process/List", [table](EnvdCall& call) {
        json processes = json::array();
        for (const auto& p : table->list(call.target.sandbox_id)) {
            json info{{"config", config_json(p->config())}, {"pid", p->pid()}};
            if (p->tag()) info["tag"] = *p->tag();
            processes.push_back(std::move(info));
        }
        return UnaryReply{json{{"processes", processes}}, std::nullopt};
    });

    add_unary_call(router, ctx, "/process.Process/SendInput", [table](EnvdCall& call) {
        auto sel = parse_selector(call.message);
        if (!sel.ok()) return UnaryReply{json::object(), sel.error};
        auto data = parse_send_input(call.message);
        if (!data.ok()) return UnaryReply{json::object(), data.error};
        auto process = find(*table, call, *sel.value);
        if (!process) return UnaryReply{json::object(), no_process(*sel.value)};
        if (auto st = process->write_stdin(*data.value); !st.ok()) return reply_error(st.error(), call);
        return UnaryReply{};
    });

    add_unary_call(router, ctx, "/process.Process/CloseStdin", [table](EnvdCall& call) {
        auto sel = parse_selector(call.message);
        if (!sel.ok()) return UnaryReply{json::object(), sel.error};
        auto process = find(*table, call, *sel.value);
        if (!process) return UnaryReply{json::object(), no_process(*sel.value)};
        if (auto st = process->close_stdin(); !st.ok()) return reply_error(st.error(), call);
        return UnaryReply{};
    });

    add_unary_call(router, ctx, "/process.Process/SendSignal", [table](EnvdCall& call) {
        auto sel = parse_selector(call.message);
        if (!sel.ok()) return UnaryReply{json::object(), sel.error};
        auto sig = parse_signal(call.message);
        if (!sig.ok()) return UnaryReply{json::object(), sig.error};
        auto process = find(*table, call, *sel.value);
        if (!process) return UnaryReply{json::object(), no_process(*sel.value)};
        if (auto st = call.lease->agent().send_signal(process->stream(), *sig.value); !st.ok()) return reply_error(st.error(), call);
        return UnaryReply{};
    });

    add_unary_call(router, ctx, "/process.Process/Update", [](EnvdCall&) {
        return reply_error(ConnectCode::Unimplemented, "PTY processes are not supported by Kiln, so there is nothing to resize");
    });
    add_unary_call(router, ctx, "/process.Process/StreamInput", [](EnvdCall&) {
        return reply_error(ConnectCode::Unimplemented, "client-streaming calls are not supported; use SendInput");
    });
}

}  // namespace kiln::daemon::e2b
