// /v1/sandboxes/{id}/files...: read, write, delete, stat, list, mkdir, and tarballs in and out.
#include <signal.h>

#include <algorithm>

#include "kilnd/http/request_parsing.h"
#include "kilnd/http/route_context.h"
#include "kilnd/http/tar_check.h"
#include "vm/agent_client.h"

namespace kiln::daemon::http {

namespace {

// The sandbox (leased) and the checked ?path= of a files request.
struct FileTarget {
    std::shared_ptr<SandboxLease> lease;
    std::string path;
};

Result<FileTarget> file_target(RouteContext& ctx, const Caller& caller, const Request& req) {
    std::string id = path_id(req);
    if (!plausible_sandbox_id(id)) return sandbox_not_found(id);
    if (!req.has_param("path")) return make_error(ErrorCode::InvalidArgument, "the path query parameter is required");
    std::string path = TRY(validate_guest_path(req.get_param_value("path")));
    auto lease = TRY(ctx.service.lease(caller, id));
    return FileTarget{std::move(lease), std::move(path)};
}

std::string join(const std::string& dir, const std::string& name) {
    return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::pair<std::string, std::string> split_parent(const std::string& path) {
    std::string trimmed = path;
    while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
    size_t slash = trimmed.find_last_of('/');
    std::string parent = slash == 0 ? "/" : trimmed.substr(0, slash);
    return {parent, trimmed.substr(slash + 1)};
}

void send_file_info(Response& res, vm::AgentClient& agent, const std::string& path) {
    auto info = agent.stat(path);
    if (!info.ok()) return send_error(res, info.error());
    send_json(res, 200, render(*info, path));
}

}  // namespace

void add_file_routes(Router& server, RouteContext& ctx) {
    const std::string base = std::string("/v1/sandboxes/") + kId + "/files";

    server.Get(base, authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        auto target = file_target(ctx, caller, req);
        if (!target.ok()) return send_error(res, target.error());
        auto info = target->lease->agent().stat(target->path);
        if (!info.ok()) return send_error(res, info.error());
        if (info->type == "dir")
            return send_error(res, make_error(ErrorCode::InvalidArgument, target->path + " is a folder: use files/list or files/tar"));
        auto shared = std::make_shared<FileTarget>(std::move(*target));
        res.status = 200;
        res.set_chunked_content_provider("application/octet-stream", [shared](size_t, DataSink& sink) {
            // Errors after the headers cannot change the status: the transfer then ends without
            // its final chunk (returning false), which clients see as an error, not a short file.
            auto read = shared->lease->agent().read_file(shared->path, [&sink](std::string_view data) -> Status {
                if (!sink.write(data.data(), data.size())) return make_error(ErrorCode::ClientGone, "the client went away");
                return ok_status();
            });
            if (!read.ok()) return false;
            sink.done();
            return true;
        });
    }));

    server.Put(base, authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        uint32_t mode = 0644;
        if (req.has_param("mode")) {
            auto m = parse_mode(req.get_param_value("mode"));
            if (!m.ok()) return send_error(res, m.error());
            mode = *m;
        }
        auto target = file_target(ctx, caller, req);
        if (!target.ok()) return send_error(res, target.error());
        auto& agent = target->lease->agent();
        auto written = agent.write_file(target->path, vm::source_from_string(req.body), mode);
        if (!written.ok()) return send_error(res, written.error());
        send_file_info(res, agent, target->path);
    }), ctx.config.max_upload_body);

    server.Delete(base, authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        auto target = file_target(ctx, caller, req);
        if (!target.ok()) return send_error(res, target.error());
        if (target->path == "/") return send_error(res, make_error(ErrorCode::InvalidArgument, "refusing to remove /"));
        proto::RemoveRequest r;
        r.path = target->path;
        r.recursive = req.get_param_value("recursive") == "true" || req.get_param_value("recursive") == "1";
        auto st = target->lease->agent().remove(r);
        if (!st.ok()) return send_error(res, st.error());
        res.status = 204;
    }));

    server.Get(base + "/stat", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        auto target = file_target(ctx, caller, req);
        if (!target.ok()) return send_error(res, target.error());
        send_file_info(res, target->lease->agent(), target->path);
    }));

    server.Get(base + "/list", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        auto target = file_target(ctx, caller, req);
        if (!target.ok()) return send_error(res, target.error());
        auto entries = target->lease->agent().list(target->path);
        if (!entries.ok()) return send_error(res, entries.error());
        std::sort(entries->begin(), entries->end(), [](const auto& a, const auto& b) { return a.name < b.name; });
        json items = json::array();
        for (const auto& e : *entries) items.push_back(render(e, join(target->path, e.name)));
        send_json(res, 200, json{{"entries", items}});
    }));

    server.Post(base + "/mkdir", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        auto target = file_target(ctx, caller, req);
        if (!target.ok()) return send_error(res, target.error());
        proto::MkdirRequest m;
        m.path = target->path;
        auto st = target->lease->agent().mkdir(m);
        if (!st.ok()) return send_error(res, st.error());
        send_file_info(res, target->lease->agent(), target->path);
    }));

    server.Post(base + "/tar", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        auto target = file_target(ctx, caller, req);
        if (!target.ok()) return send_error(res, target.error());
        TarLimits limits;
        limits.max_bytes = std::min<uint64_t>(limits.max_bytes, 4 * uint64_t(ctx.config.max_upload_body));
        auto checked = check_tar(req.body, limits);
        if (!checked.ok()) return send_error(res, checked.error());
        auto& agent = target->lease->agent();
        proto::MkdirRequest m;
        m.path = target->path;
        if (auto st = agent.mkdir(m); !st.ok()) return send_error(res, st.error());
        proto::ExecRequest x;
        x.argv = {"tar", "-x", "-f", "-", "-C", target->path};
        x.timeout_ms = 600000;
        auto out = agent.exec_collect(x, checked->tar, 64 * 1024);
        if (!out.ok()) return send_error(res, out.error());
        if (out->result.shell_status() != 0)
            return send_error(res, make_error(ErrorCode::Internal, "tar in the sandbox failed (status " +
                                                                    std::to_string(out->result.shell_status()) +
                                                                    "): " + out->stderr_data.substr(0, 500)));
        send_json(res, 200, json{{"entries", checked->entries}, {"bytes", checked->bytes}});
    }), ctx.config.max_upload_body);

    server.Get(base + "/tar", authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        auto target = file_target(ctx, caller, req);
        if (!target.ok()) return send_error(res, target.error());
        auto info = target->lease->agent().stat(target->path);
        if (!info.ok()) return send_error(res, info.error());
        auto x = std::make_shared<proto::ExecRequest>();
        if (info->type == "dir") {
            x->argv = {"tar", "-c", "-f", "-", "-C", target->path, "."};
        } else {
            auto [parent, name] = split_parent(target->path);
            x->argv = {"tar", "-c", "-f", "-", "-C", parent, name};
        }
        x->timeout_ms = 3600 * 1000;
        auto lease = target->lease;
        res.status = 200;
        res.set_chunked_content_provider("application/x-tar", [lease, x](size_t, DataSink& sink) {
            uint32_t stream = 0;
            bool gone = false;
            vm::ExecIo io;
            io.on_started = [&stream](uint32_t s, int) { stream = s; };
            io.on_stdout = [&](std::string_view data) {
                if (gone) return;
                if (!sink.write(data.data(), data.size())) {
                    gone = true;
                    if (stream) (void)lease->agent().send_signal(stream, SIGKILL);
                }
            };
            auto ran = lease->agent().exec(*x, io);
            if (!ran.ok() || ran->shell_status() != 0) return false;  // no final chunk: the client sees the failure
            sink.done();
            return true;
        });
    }));
}

}  // namespace kiln::daemon::http
