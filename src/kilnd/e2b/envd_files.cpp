#include "kilnd/e2b/envd_files.h"

#include "kilnd/e2b/connect_route.h"
#include "kilnd/e2b/envd_entry.h"
#include "kilnd/e2b/envd_errors.h"
#include "kilnd/e2b/envd_messages.h"
#include "kilnd/e2b/envd_multipart.h"
#include "kilnd/e2b/envd_user.h"
#include "vm/agent_client.h"

namespace kiln::daemon::e2b {

namespace {

void send_envd_error(http::Response& res, int status, const std::string& message) {
    res.status = status;
    res.set_content(envd_error_body(status, message).dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_envd_error(http::Response& res, const Error& error, const std::string& request_id) {
    send_envd_error(res, envd_http_status(error), to_connect_error(error, request_id).message);
}

// The call, with the user of ?username= when given (it wins over the Authorization header).
Result<EnvdCall> open_files_call(EnvdContext& ctx, const http::Request& req) {
    auto call = TRY(open_envd_call(ctx, req));
    if (req.has_param("username")) {
        std::string user = req.get_param_value("username");
        if (!plausible_user_name(user))
            return make_error(ErrorCode::Unauthorized, "invalid user name '" + user.substr(0, 64) + "'");
        call.user = std::move(user);
    }
    return call;
}

Result<std::string> query_path(const http::Request& req, const EnvdCall& call) {
    if (!req.has_param("path") || req.get_param_value("path").empty())
        return make_error(ErrorCode::InvalidArgument, "the path query parameter is required");
    return resolve_guest_path(req.get_param_value("path"), home_of(call.user));
}

}  // namespace

void add_files_routes(http::Router& router, EnvdContext& ctx) {
    router.Get("/files", [&ctx](const http::Request& req, http::Response& res) {
        auto call = open_files_call(ctx, req);
        if (!call.ok()) return send_envd_error(res, call.error(), req.request_id);
        auto path = query_path(req, *call);
        if (!path.ok()) return send_envd_error(res, path.error(), req.request_id);
        auto info = call->lease->agent().stat(*path);
        if (!info.ok()) {
            if (info.error().code == ErrorCode::NotFound) return send_envd_error(res, 404, "path '" + *path + "' does not exist");
            return send_envd_error(res, info.error(), req.request_id);
        }
        if (info->type == "dir") return send_envd_error(res, 400, "path '" + *path + "' is a directory");
        auto lease = call->lease;
        res.status = 200;
        res.set_chunked_content_provider("application/octet-stream", [lease, path = *path](size_t, http::DataSink& sink) {
            // After the headers an error cannot change the status: the transfer ends short
            // (no last chunk), which the client sees as a failed download, never a short file.
            auto read = lease->agent().read_file(path, [&sink](std::string_view data) -> Status {
                if (!sink.write(data.data(), data.size())) return make_error(ErrorCode::ClientGone, "the client went away");
                return ok_status();
            });
            if (!read.ok()) return false;
            sink.done();
            return true;
        });
    });

    router.Post("/files", [&ctx](const http::Request& req, http::Response& res) {
        auto call = open_files_call(ctx, req);
        if (!call.ok()) return send_envd_error(res, call.error(), req.request_id);
        std::string encoding = req.get_header_value("Content-Encoding");
        if (!encoding.empty() && encoding != "identity")
            return send_envd_error(res, 400, "Content-Encoding '" + encoding.substr(0, 50) + "' is not supported (identity only)");
        std::string content_type = req.get_header_value("Content-Type");

        // (guest path, bytes) of each file, resolved before anything is written.
        std::vector<std::pair<std::string, std::string_view>> files;
        if (auto boundary = multipart_boundary(content_type); boundary.ok()) {
            auto parts = parse_multipart(req.body, *boundary);
            if (!parts.ok()) return send_envd_error(res, parts.error(), req.request_id);
            std::vector<const FormPart*> file_parts;
            for (const auto& p : *parts)
                if (p.name == "file") file_parts.push_back(&p);
            if (file_parts.empty()) return send_envd_error(res, 400, "the multipart body has no part named 'file'");
            bool single_with_path = file_parts.size() == 1 && req.has_param("path");
            for (const FormPart* p : file_parts) {
                std::string wanted = single_with_path ? req.get_param_value("path") : p->filename;
                if (wanted.empty()) return send_envd_error(res, 400, "a file part has no filename and the request no path");
                auto path = resolve_guest_path(wanted, home_of(call->user));
                if (!path.ok()) return send_envd_error(res, path.error(), req.request_id);
                files.emplace_back(std::move(*path), p->data);
            }
        } else {
            auto path = query_path(req, *call);
            if (!path.ok()) return send_envd_error(res, path.error(), req.request_id);
            files.emplace_back(std::move(*path), std::string_view(req.body));
        }

        auto& agent = call->lease->agent();
        json written = json::array();
        for (const auto& [path, data] : files) {
            proto::WriteRequest w;
            w.path = path;
            w.user = call->user;  // the file, and folders made for it, are the user's
            auto st = agent.write_file(w, vm::source_from_string(std::string(data)));
            if (!st.ok()) return send_envd_error(res, st.error(), req.request_id);
            written.push_back(upload_entry_json(path, false));
        }
        res.status = 200;
        res.set_content(written.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    }, kMaxEnvdUpload);
}

}  // namespace kiln::daemon::e2b
