#include "kilnd/e2b/envd_filesystem.h"

#include <chrono>
#include <thread>

#include "kilnd/e2b/connect_route.h"
#include "kilnd/e2b/envd_entry.h"
#include "kilnd/e2b/envd_errors.h"
#include "kilnd/e2b/envd_messages.h"
#include "kilnd/e2b/envd_walk.h"
#include "kilnd/e2b/envd_watch.h"
#include "vm/agent_client.h"

namespace kiln::daemon::e2b {

namespace {

constexpr std::chrono::milliseconds kWatchPoll{500};
constexpr int kKeepAliveEveryPolls = 60;  // 30 s

UnaryReply refused(const std::optional<ConnectError>& error) { return UnaryReply{json::object(), error}; }

UnaryReply entry_reply(const EnvdCall& call, const std::string& path) {
    auto info = call.lease->agent().stat(path);
    if (!info.ok()) return reply_error(info.error(), call);
    return UnaryReply{json{{"entry", entry_info_json(*info, path)}}, std::nullopt};
}

Status move_path(vm::AgentClient& agent, const std::string& from, const std::string& to) {
    TRY(agent.stat(from));  // not_found for a missing source, as rename(2) would say
    // mv -T: the destination is the new name even when it is an existing folder, as rename(2).
    proto::ExecRequest r;
    r.argv = {"mv", "-T", "--", from, to};
    r.timeout_ms = 60000;
    auto out = TRY(agent.exec_collect(r, std::nullopt, 4096));
    if (out.result.exit_code != 0 || out.result.signal)
        return make_error(ErrorCode::InvalidArgument, "cannot move '" + from + "' to '" + to + "': " + out.stderr_data);
    return ok_status();
}

}  // namespace

void add_filesystem_service(http::Router& router, EnvdContext& ctx) {
    auto watchers = std::make_shared<WatcherRegistry>();

    add_unary_call(router, ctx, "/filesystem.Filesystem/Stat", [](EnvdCall& call) {
        auto path = parse_path_field(call.message, "path", home_of(call.user));
        if (!path.ok()) return refused(path.error);
        return entry_reply(call, *path.value);
    });

    add_unary_call(router, ctx, "/filesystem.Filesystem/ListDir", [](EnvdCall& call) {
        auto path = parse_path_field(call.message, "path", home_of(call.user));
        if (!path.ok()) return refused(path.error);
        auto depth = parse_depth(call.message);
        if (!depth.ok()) return refused(depth.error);
        auto& agent = call.lease->agent();
        auto info = agent.stat(*path.value);
        if (!info.ok()) return reply_error(info.error(), call);
        if (info->type != "dir")
            return reply_error(ConnectCode::InvalidArgument, "path '" + *path.value + "' is not a directory");
        auto entries = walk_dir(agent, *path.value, *depth.value);
        if (!entries.ok()) return reply_error(entries.error(), call);
        json list = json::array();
        for (const auto& e : *entries) list.push_back(entry_info_json(e.info, e.path));
        return UnaryReply{json{{"entries", std::move(list)}}, std::nullopt};
    });

    add_unary_call(router, ctx, "/filesystem.Filesystem/MakeDir", [](EnvdCall& call) {
        auto path = parse_path_field(call.message, "path", home_of(call.user));
        if (!path.ok()) return refused(path.error);
        auto& agent = call.lease->agent();
        // envd answers already_exists for a folder that is there; the SDK's makeDir then says false.
        if (auto existing = agent.stat(*path.value); existing.ok())
            return reply_error(ConnectCode::AlreadyExists, "path '" + *path.value + "' already exists");
        proto::MkdirRequest r;
        r.path = *path.value;
        r.parents = true;
        if (auto st = agent.mkdir(r); !st.ok()) return reply_error(st.error(), call);
        return entry_reply(call, *path.value);
    });

    add_unary_call(router, ctx, "/filesystem.Filesystem/Move", [](EnvdCall& call) {
        auto from = parse_path_field(call.message, "source", home_of(call.user));
        if (!from.ok()) return refused(from.error);
        auto to = parse_path_field(call.message, "destination", home_of(call.user));
        if (!to.ok()) return refused(to.error);
        if (auto st = move_path(call.lease->agent(), *from.value, *to.value); !st.ok()) return reply_error(st.error(), call);
        return entry_reply(call, *to.value);
    });

    add_unary_call(router, ctx, "/filesystem.Filesystem/Remove", [](EnvdCall& call) {
        auto path = parse_path_field(call.message, "path", home_of(call.user));
        if (!path.ok()) return refused(path.error);
        if (*path.value == "/") return reply_error(ConnectCode::InvalidArgument, "refusing to remove /");
        proto::RemoveRequest r;
        r.path = *path.value;
        r.recursive = true;  // envd removes folders with their contents
        if (auto st = call.lease->agent().remove(r); !st.ok()) return reply_error(st.error(), call);
        return UnaryReply{};
    });

    add_stream_call(router, ctx, "/filesystem.Filesystem/WatchDir", [](EnvdCall& call, ConnectStream& stream) -> std::optional<ConnectError> {
        auto path = parse_path_field(call.message, "path", home_of(call.user));
        if (!path.ok()) return path.error;
        auto recursive = parse_bool_field(call.message, "recursive");
        if (!recursive.ok()) return recursive.error;
        auto& agent = call.lease->agent();
        auto dir = PolledDir::open(agent, *path.value, *recursive.value);
        if (!dir.ok()) return to_connect_error(dir.error(), call.request_id);
        // WatchDirResponse's oneof is its own fields (proto3 JSON names no oneof): {"start": {}}.
        if (!stream.send(json{{"start", json::object()}})) return std::nullopt;
        for (int tick = 1;; ++tick) {
            std::this_thread::sleep_for(kWatchPoll);
            if (stream.client_gone()) return std::nullopt;
            auto events = dir->poll(agent);
            // The folder went away, or the sandbox did: the stream ends with why.
            if (!events.ok()) return to_connect_error(events.error(), call.request_id);
            for (const auto& e : *events)
                if (!stream.send(json{{"filesystem", fs_event_json(e)}})) return std::nullopt;
            if (events->empty() && tick % kKeepAliveEveryPolls == 0 &&
                !stream.send(json{{"keepalive", json::object()}}))
                return std::nullopt;
        }
    });

    add_unary_call(router, ctx, "/filesystem.Filesystem/CreateWatcher", [watchers](EnvdCall& call) {
        auto path = parse_path_field(call.message, "path", home_of(call.user));
        if (!path.ok()) return refused(path.error);
        auto recursive = parse_bool_field(call.message, "recursive");
        if (!recursive.ok()) return refused(recursive.error);
        auto dir = PolledDir::open(call.lease->agent(), *path.value, *recursive.value);
        if (!dir.ok()) return reply_error(dir.error(), call);
        auto id = watchers->add(call.target.sandbox_id, std::move(*dir));
        if (!id.ok()) return reply_error(id.error(), call);
        return UnaryReply{json{{"watcherId", *id}}, std::nullopt};
    });

    add_unary_call(router, ctx, "/filesystem.Filesystem/GetWatcherEvents", [watchers](EnvdCall& call) {
        auto id = parse_string_field(call.message, "watcherId");
        if (!id.ok()) return refused(id.error);
        auto events = watchers->events(call.target.sandbox_id, *id.value, call.lease->agent());
        if (!events.ok()) return reply_error(events.error(), call);
        json list = json::array();
        for (const auto& e : *events) list.push_back(fs_event_json(e));
        return UnaryReply{json{{"events", std::move(list)}}, std::nullopt};
    });

    add_unary_call(router, ctx, "/filesystem.Filesystem/RemoveWatcher", [watchers](EnvdCall& call) {
        auto id = parse_string_field(call.message, "watcherId");
        if (!id.ok()) return refused(id.error);
        if (auto st = watchers->remove(call.target.sandbox_id, *id.value); !st.ok()) return reply_error(st.error(), call);
        return UnaryReply{};
    });
}

}  // namespace kiln::daemon::e2b
