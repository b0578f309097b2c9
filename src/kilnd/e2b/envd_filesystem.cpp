#include "kilnd/e2b/envd_filesystem.h"

#include <atomic>
#include <chrono>

#include "kilnd/e2b/connect_route.h"
#include "kilnd/e2b/envd_entry.h"
#include "kilnd/e2b/envd_errors.h"
#include "kilnd/e2b/envd_messages.h"
#include "kilnd/e2b/envd_watch.h"
#include "vm/agent_client.h"

namespace kiln::daemon::e2b {

namespace {


UnaryReply refused(const std::optional<ConnectError>& error) { return UnaryReply{json::object(), error}; }

UnaryReply entry_reply(const EnvdCall& call, const std::string& path) {
    auto info = call.lease->agent().stat(path);
    if (!info.ok()) return reply_error(info.error(), call);
    return UnaryReply{json{{"entry", entry_info_json(*info, path)}}, std::nullopt};
}

// The events of one WatchDir stream, as they come, until the client leaves: a side thread sees
// a departed client (and sends keepalives while nothing happens), which stops the agent's watch.
std::optional<ConnectError> stream_watch(EnvdCall& call, ConnectStream& stream, const std::string& path, bool recursive) {
    std::atomic<bool> stop{false};
    // WatchDirResponse's oneof is its own fields (proto3 JSON names no oneof): {"start": {}}.
    auto on_started = [&] {
        if (!stream.send(json{{"start", json::object()}})) stop = true;
    };
    auto on_event = [&](const proto::WatchEvent& e) {
        if (auto j = fs_event_json(e); j && !stream.send(json{{"filesystem", *j}})) stop = true;
    };
    Status st = [&] {
        ClientWatch client(stream, json{{"keepalive", json::object()}}, [&stop] { stop = true; });
        return call.lease->agent().watch(path, recursive, on_event, stop, on_started);
    }();
    // The folder went away, or the sandbox did: the stream ends with why.
    if (!st.ok() && !stop) return to_connect_error(st.error(), call.request_id);
    return std::nullopt;
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
        proto::ListRequest r;
        r.path = *path.value;
        r.depth = *depth.value;
        auto entries = agent.list(r);
        if (!entries.ok()) return reply_error(entries.error(), call);
        json list = json::array();
        for (const auto& e : *entries) list.push_back(entry_info_json(e, e.path.empty() ? join_path(r.path, e.name) : e.path));
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
        r.user = call.user;  // the new folders (parents too) are the user's
        if (auto st = agent.mkdir(r); !st.ok()) return reply_error(st.error(), call);
        return entry_reply(call, *path.value);
    });

    add_unary_call(router, ctx, "/filesystem.Filesystem/Move", [](EnvdCall& call) {
        auto from = parse_path_field(call.message, "source", home_of(call.user));
        if (!from.ok()) return refused(from.error);
        auto to = parse_path_field(call.message, "destination", home_of(call.user));
        if (!to.ok()) return refused(to.error);
        if (auto st = call.lease->agent().move(*from.value, *to.value); !st.ok()) return reply_error(st.error(), call);
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
        return stream_watch(call, stream, *path.value, *recursive.value);
    });

    add_unary_call(router, ctx, "/filesystem.Filesystem/CreateWatcher", [watchers](EnvdCall& call) {
        auto path = parse_path_field(call.message, "path", home_of(call.user));
        if (!path.ok()) return refused(path.error);
        auto recursive = parse_bool_field(call.message, "recursive");
        if (!recursive.ok()) return refused(recursive.error);
        auto watcher = DirWatcher::start(call.lease, *path.value, *recursive.value);
        if (!watcher.ok()) return reply_error(watcher.error(), call);
        auto id = watchers->add(call.target.sandbox_id, std::move(*watcher));
        if (!id.ok()) return reply_error(id.error(), call);
        return UnaryReply{json{{"watcherId", *id}}, std::nullopt};
    });

    add_unary_call(router, ctx, "/filesystem.Filesystem/GetWatcherEvents", [watchers](EnvdCall& call) {
        auto id = parse_string_field(call.message, "watcherId");
        if (!id.ok()) return refused(id.error);
        auto watcher = watchers->find(call.target.sandbox_id, *id.value);
        if (!watcher) return reply_error(ConnectCode::NotFound, "watcher '" + id.value->substr(0, 64) + "' not found");
        auto events = watcher->take();
        if (!events.ok()) {
            // Its watch ended (the folder or the sandbox went away): said once, then it is gone.
            (void)watchers->remove(call.target.sandbox_id, *id.value);
            return reply_error(events.error(), call);
        }
        return UnaryReply{json{{"events", std::move(*events)}}, std::nullopt};
    });

    add_unary_call(router, ctx, "/filesystem.Filesystem/RemoveWatcher", [watchers](EnvdCall& call) {
        auto id = parse_string_field(call.message, "watcherId");
        if (!id.ok()) return refused(id.error);
        if (auto st = watchers->remove(call.target.sandbox_id, *id.value); !st.ok()) return reply_error(st.error(), call);
        return UnaryReply{};
    });
}

}  // namespace kiln::daemon::e2b
