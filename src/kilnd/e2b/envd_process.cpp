#include "kilnd/e2b/envd_process.h"

#include <signal.h>
#include <string.h>

#include <atomic>
#include <variant>

#include "base/base64.h"
#include "kilnd/e2b/connect_route.h"
#include "kilnd/e2b/envd_errors.h"
#include "kilnd/e2b/envd_messages.h"
#include "vm/agent_client.h"

namespace kiln::daemon::e2b {

namespace {

json event(const char* kind, json body) { return json{{"event", {{kind, std::move(body)}}}}; }

json end_event(const proto::ExecResult& r) {
    json body = json::object();
    if (r.signal) {
        // As Go's os.ProcessState reports a signalled process, which envd passes on.
        body["exitCode"] = -1;
        body["exited"] = false;
        body["status"] = std::string("signal: ") + (r.signal == SIGKILL ? "killed" : strsignal(r.signal));
    } else {
        body["exitCode"] = r.exit_code;
        body["exited"] = true;
        body["status"] = "exit status " + std::to_string(r.exit_code);
    }
    if (r.timed_out) body["error"] = "the command timed out";
    return event("end", body);
}

// The exec a Start asks for: argv as given (the SDK sends /bin/bash -l -c <cmd>), the sandbox's
// environment under the call's, as the call's user, in its home unless cwd says otherwise. Kept:
// it outlives this stream, for List, Connect, SendInput and SendSignal.
proto::ExecRequest exec_request(const EnvdCall& call, const StartRequest& start) {
    proto::ExecRequest r;
    r.argv.push_back(start.process.cmd);
    r.argv.insert(r.argv.end(), start.process.args.begin(), start.process.args.end());
    Labels env = call.lease->info().env;
    for (const auto& [k, v] : start.process.envs) env[k] = v;
    r.env = std::move(env);
    r.user = call.user;
    r.cwd = "";  // the user's home
    if (start.process.cwd)
        r.cwd = (*start.process.cwd)[0] == '/' ? *start.process.cwd : home_of(call.user) + "/" + *start.process.cwd;
    r.keep = true;
    r.tag = start.tag.value_or("");
    r.stdin = start.stdin;  // fed by SendInput, ended by CloseStdin
    r.output_limit = proto::kUnlimitedOutput;  // a background server runs for long
    return r;
}

// Runs `run` (an exec or an attach) with its output sent as events. When the client leaves,
// the agent's stream is detached: the process goes on, kept by the agent, for a later Connect.
std::optional<ConnectError> stream_process(EnvdCall& call, ConnectStream& stream,
                                           const std::function<Result<proto::ExecResult>(const vm::ExecIo&)>& run) {
    auto& agent = call.lease->agent();
    std::atomic<uint32_t> agent_stream{0};
    std::atomic<bool> detaching{false};
    auto leave = [&] {
        if (uint32_t s = agent_stream.load(); s && !detaching.exchange(true)) (void)agent.detach(s);
    };
    vm::ExecIo io;
    io.on_started = [&](uint32_t s, int pid) {
        agent_stream = s;
        if (!stream.send(event("start", {{"pid", pid}}))) leave();
    };
    io.on_stdout = [&](std::string_view data) {
        if (!stream.send(event("data", {{"stdout", base64_encode(data)}}))) leave();
    };
    io.on_stderr = [&](std::string_view data) {
        if (!stream.send(event("data", {{"stderr", base64_encode(data)}}))) leave();
    };
    auto result = [&] {
        ClientWatch client(stream, event("keepalive", json::object()), leave);
        return run(io);
    }();
    if (!result.ok()) return to_connect_error(result.error(), call.request_id);
    if (!result->detached) stream.send(end_event(*result));
    return std::nullopt;
}

// The pid a selector names: itself, or the kept process with that tag.
Result<int> selected_pid(vm::AgentClient& agent, const ProcessSelector& sel) {
    if (sel.pid) return static_cast<int>(*sel.pid);
    auto processes = TRY(agent.processes());
    for (const auto& p : processes)
        if (p.tag == *sel.tag) return p.pid;
    return make_error(ErrorCode::NotFound, "process with tag '" + sel.tag->substr(0, 256) + "' not found");
}

// The selector of a unary call's message and its pid, or the reply to send instead.
std::variant<int, UnaryReply> selected(const EnvdCall& call) {
    auto sel = parse_selector(call.message);
    if (!sel.ok()) return UnaryReply{json::object(), sel.error};
    auto pid = selected_pid(call.lease->agent(), *sel.value);
    if (!pid.ok()) return reply_error(pid.error(), call);
    return *pid;
}

json process_info_json(const proto::ProcessInfo& p) {
    json config{{"cmd", p.argv.empty() ? std::string() : p.argv[0]},
                {"args", p.argv.empty() ? std::vector<std::string>() : std::vector<std::string>(p.argv.begin() + 1, p.argv.end())},
                {"envs", p.env}};
    if (!p.cwd.empty()) config["cwd"] = p.cwd;
    json info{{"config", std::move(config)}, {"pid", p.pid}};
    if (!p.tag.empty()) info["tag"] = p.tag;
    return info;
}

}  // namespace

void add_process_service(http::Router& router, EnvdContext& ctx) {
    add_stream_call(router, ctx, "/process.Process/Start", [](EnvdCall& call, ConnectStream& stream) -> std::optional<ConnectError> {
        auto start = parse_start_request(call.message);
        if (!start.ok()) return start.error;
        proto::ExecRequest request = exec_request(call, *start.value);
        return stream_process(call, stream, [&](const vm::ExecIo& io) { return call.lease->agent().exec(request, io); });
    });

    add_stream_call(router, ctx, "/process.Process/Connect", [](EnvdCall& call, ConnectStream& stream) -> std::optional<ConnectError> {
        auto sel = parse_selector(call.message);
        if (!sel.ok()) return sel.error;
        auto pid = selected_pid(call.lease->agent(), *sel.value);
        if (!pid.ok()) return to_connect_error(pid.error(), call.request_id);
        return stream_process(call, stream, [&](const vm::ExecIo& io) { return call.lease->agent().attach(*pid, io); });
    });

    add_unary_call(router, ctx, "/process.Process/List", [](EnvdCall& call) {
        auto processes = call.lease->agent().processes();
        if (!processes.ok()) return reply_error(processes.error(), call);
        json list = json::array();
        for (const auto& p : *processes) list.push_back(process_info_json(p));
        return UnaryReply{json{{"processes", std::move(list)}}, std::nullopt};
    });

    add_unary_call(router, ctx, "/process.Process/SendInput", [](EnvdCall& call) {
        auto pid = selected(call);
        if (auto* reply = std::get_if<UnaryReply>(&pid)) return *reply;
        auto data = parse_send_input(call.message);
        if (!data.ok()) return UnaryReply{json::object(), data.error};
        if (auto st = call.lease->agent().send_input(std::get<int>(pid), *data.value); !st.ok()) return reply_error(st.error(), call);
        return UnaryReply{};
    });

    add_unary_call(router, ctx, "/process.Process/CloseStdin", [](EnvdCall& call) {
        auto pid = selected(call);
        if (auto* reply = std::get_if<UnaryReply>(&pid)) return *reply;
        if (auto st = call.lease->agent().close_input(std::get<int>(pid)); !st.ok()) return reply_error(st.error(), call);
        return UnaryReply{};
    });

    add_unary_call(router, ctx, "/process.Process/SendSignal", [](EnvdCall& call) {
        auto pid = selected(call);
        if (auto* reply = std::get_if<UnaryReply>(&pid)) return *reply;
        auto sig = parse_signal(call.message);
        if (!sig.ok()) return UnaryReply{json::object(), sig.error};
        if (auto st = call.lease->agent().signal_process(std::get<int>(pid), *sig.value); !st.ok()) return reply_error(st.error(), call);
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
