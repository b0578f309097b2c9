// POST /v1/sandboxes/{id}/exec: buffered JSON, or streamed events (NDJSON or server-sent events).
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "base/clock.h"
#include "kilnd/http/exec_output.h"
#include "kilnd/http/request_parsing.h"
#include "kilnd/http/route_context.h"
#include "vm/agent_client.h"

namespace kiln::daemon::http {

namespace {

enum class StreamFormat { None, Ndjson, Sse };

StreamFormat stream_format(const Request& req) {
    std::string accept = req.get_header_value("Accept");
    if (accept.find("application/x-ndjson") != std::string::npos) return StreamFormat::Ndjson;
    if (accept.find("text/event-stream") != std::string::npos) return StreamFormat::Sse;
    return StreamFormat::None;
}

double ms_since(Clock::time_point start) { return std::chrono::duration<double, std::milli>(Clock::now() - start).count(); }

json exit_event(const proto::ExecResult& r) {
    json event = {{"type", "exit"},
                  {"exit_code", r.signal ? json(nullptr) : json(r.exit_code)},
                  {"signal", r.signal ? json(r.signal) : json(nullptr)},
                  {"timed_out", r.timed_out},
                  {"duration_ms", r.duration_ms}};
    // The agent's own cap (1 GiB a command) cut the stream; `kiln sandbox exec` reads this.
    if (r.output_truncated) event["truncated"] = true;
    return event;
}

// Runs one streamed exec inside the response's content provider, writing events as they come.
// A client that goes away kills the command (its whole process group, through the agent).
void stream_exec(RouteContext& ctx, const std::shared_ptr<SandboxLease>& lease, const ExecBody& body,
                 StreamFormat format, DataSink& sink, const std::string& request_id) {
    std::mutex sink_mutex;  // the exec's callbacks and the keep-alive thread both write
    bool client_gone = false;
    std::atomic<uint32_t> stream{0};
    auto write_locked = [&](const std::string& text) {
        if (client_gone) return;
        if (!sink.write(text.data(), text.size())) {
            client_gone = true;
            if (stream) (void)lease->agent().send_signal(stream, SIGKILL);
        }
    };
    auto emit = [&](const json& event) {
        std::string text = format == StreamFormat::Sse
                               ? "event: " + event["type"].get<std::string>() + "\ndata: " + dump(event) + "\n\n"
                               : dump(event) + "\n";
        std::lock_guard lock(sink_mutex);
        write_locked(text);
    };
    // The server sees a client leave (or kilnd stop) without a write (sink.is_writable): a
    // silent command (`sleep 1000`) of a departed client is killed within a second, in either
    // format. SSE also gets a comment every 5 s, which every reader skips.
    std::condition_variable beat_cv;
    bool finished = false;
    std::thread beat([&] {
        std::unique_lock lock(sink_mutex);
        for (int tick = 1; !beat_cv.wait_for(lock, std::chrono::seconds(1), [&] { return finished; }); ++tick) {
            if (!client_gone && sink.is_writable && !sink.is_writable()) {
                client_gone = true;
                if (stream) (void)lease->agent().send_signal(stream, SIGKILL);
            }
            if (format == StreamFormat::Sse && tick % 5 == 0) write_locked(": keep-alive\n\n");
        }
    });
    Utf8Carry out_carry, err_carry;
    vm::ExecIo io;
    io.on_started = [&](uint32_t s, int pid) {
        stream = s;
        emit(json{{"type", "start"}, {"pid", pid}});
    };
    io.on_stdout = [&](std::string_view data) {
        std::string text = out_carry.take(data);
        if (!text.empty()) emit(json{{"type", "stdout"}, {"data", text}});
    };
    io.on_stderr = [&](std::string_view data) {
        std::string text = err_carry.take(data);
        if (!text.empty()) emit(json{{"type", "stderr"}, {"data", text}});
    };
    if (body.stdin_data) io.stdin_data = body.stdin_data;
    auto start = Clock::now();
    auto result = lease->agent().exec(body.request, io);
    ctx.metrics.observe_exec_ms(ms_since(start));
    if (beat.joinable()) {
        {
            std::lock_guard lock(sink_mutex);
            finished = true;
        }
        beat_cv.notify_all();
        beat.join();
    }
    if (std::string rest = out_carry.flush(); !rest.empty()) emit(json{{"type", "stdout"}, {"data", rest}});
    if (std::string rest = err_carry.flush(); !rest.empty()) emit(json{{"type", "stderr"}, {"data", rest}});
    if (result.ok()) emit(exit_event(*result));
    else emit(json{{"type", "error"}, {"error", render_error(api_error(result.error(), request_id))["error"]}});
    sink.done();
}

}  // namespace

void add_exec_routes(Router& server, RouteContext& ctx) {
    const std::string route = std::string("/v1/sandboxes/") + kId + "/exec";
    server.Post(route, authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        std::string id = path_id(req);
        if (!plausible_sandbox_id(id)) return send_error(res, sandbox_not_found(id));
        if (auto st = check_body_size(req, ctx.config.max_upload_body); !st.ok()) return send_error(res, st.error());
        auto parsed = parse_exec(req.body);
        if (!parsed.ok()) return send_error(res, parsed.error());
        auto lease = ctx.service.lease(caller, id);
        if (!lease.ok()) return send_error(res, lease.error());
        ExecBody body = std::move(*parsed);
        // The sandbox's env first; the exec's own values win.
        Labels env = (*lease)->info().env;
        for (auto& [k, v] : body.request.env) env[k] = v;
        body.request.env = std::move(env);

        StreamFormat format = stream_format(req);
        if (format != StreamFormat::None) {
            auto shared_lease = *lease;
            auto shared_body = std::make_shared<ExecBody>(std::move(body));
            res.status = 200;
            if (format == StreamFormat::Sse) res.set_header("Cache-Control", "no-cache");
            res.set_chunked_content_provider(
                format == StreamFormat::Sse ? "text/event-stream" : "application/x-ndjson",
                [&ctx, shared_lease, shared_body, format, request_id = req.request_id](size_t, DataSink& sink) {
                    stream_exec(ctx, shared_lease, *shared_body, format, sink, request_id);
                    return true;
                });
            return;
        }

        // The cap is the host's: the agent is untrusted, so whatever it sends past the cap is
        // counted and dropped here. The agent is asked for everything so that the count is
        // exact; the command runs to its end or its timeout, as it would unbuffered.
        body.request.output_limit = proto::kUnlimitedOutput;
        CappedOutput out(ctx.config.max_exec_output), err(ctx.config.max_exec_output);
        vm::ExecIo io;
        io.on_stdout = [&out](std::string_view data) { out.append(data); };
        io.on_stderr = [&err](std::string_view data) { err.append(data); };
        if (body.stdin_data) io.stdin_data = body.stdin_data;
        auto start = Clock::now();
        auto result = (*lease)->agent().exec(body.request, io);
        ctx.metrics.observe_exec_ms(ms_since(start));
        if (!result.ok()) return send_error(res, result.error());
        send_json(res, 200, render_exec_result(*result, out, err));
    }), ctx.config.max_upload_body);
}

}  // namespace kiln::daemon::http
