#include "kilnd/e2b/envd_watch.h"

#include "base/random.h"
#include "kilnd/e2b/envd_messages.h"
#include "kilnd/e2b/envd_walk.h"

namespace kiln::daemon::e2b {

json fs_event_json(const FsEvent& event) { return json{{"name", event.name}, {"type", event.type}}; }

Result<PolledDir> PolledDir::open(vm::AgentClient& agent, const std::string& root, bool recursive) {
    auto info = TRY(agent.stat(root));
    if (info.type != "dir") return make_error(ErrorCode::InvalidArgument, "'" + root + "' is not a directory");
    PolledDir dir;
    dir.m_root = root;
    dir.m_recursive = recursive;
    dir.m_seen = TRY(dir.list(agent));
    return dir;
}

Result<std::map<std::string, PolledDir::Seen>> PolledDir::list(vm::AgentClient& agent) const {
    auto entries = TRY(walk_dir(agent, m_root, m_recursive ? kMaxListDepth : 1));
    std::map<std::string, Seen> seen;
    size_t prefix = m_root.size() + (m_root.back() == '/' ? 0 : 1);
    for (auto& e : entries)
        seen.emplace(e.path.substr(prefix), Seen{e.info.type, e.info.size, e.info.mtime_unix_ns, e.info.mode});
    return seen;
}

Result<std::vector<FsEvent>> PolledDir::poll(vm::AgentClient& agent) {
    auto now = TRY(list(agent));
    std::vector<FsEvent> events;
    for (const auto& [name, before] : m_seen)
        if (!now.count(name)) events.push_back(FsEvent{name, "EVENT_TYPE_REMOVE"});
    for (const auto& [name, after] : now) {
        auto it = m_seen.find(name);
        if (it == m_seen.end() || it->second.type != after.type) {
            events.push_back(FsEvent{name, "EVENT_TYPE_CREATE"});
            continue;
        }
        const Seen& before = it->second;
        if (after.type != "dir" && (before.size != after.size || before.mtime_ns != after.mtime_ns))
            events.push_back(FsEvent{name, "EVENT_TYPE_WRITE"});
        else if (before.mode != after.mode) events.push_back(FsEvent{name, "EVENT_TYPE_CHMOD"});
    }
    m_seen = std::move(now);
    return events;
}

Result<std::string> WatcherRegistry::add(const std::string& sandbox_id, PolledDir dir) {
    std::lock_guard lock(m_mutex);
    auto& watchers = m_by_sandbox[sandbox_id];
    if (watchers.size() >= kMaxPerSandbox)
        return make_error(ErrorCode::ResourceExhausted,
                          "this sandbox already has " + std::to_string(kMaxPerSandbox) + " watchers; remove one first");
    std::string id = TRY(random_hex(16));
    watchers.emplace(id, std::make_shared<Watcher>(std::move(dir)));
    return id;
}

std::shared_ptr<WatcherRegistry::Watcher> WatcherRegistry::find(const std::string& sandbox_id, const std::string& id) {
    std::lock_guard lock(m_mutex);
    auto it = m_by_sandbox.find(sandbox_id);
    if (it == m_by_sandbox.end()) return nullptr;
    auto w = it->second.find(id);
    return w == it->second.end() ? nullptr : w->second;
}

Result<std::vector<FsEvent>> WatcherRegistry::events(const std::string& sandbox_id, const std::string& id,
                                                     vm::AgentClient& agent) {
    auto watcher = find(sandbox_id, id);
    if (!watcher) return make_error(ErrorCode::NotFound, "watcher '" + id.substr(0, 64) + "' not found");
    std::lock_guard lock(watcher->mutex);
    return watcher->dir.poll(agent);
}

Status WatcherRegistry::remove(const std::string& sandbox_id, const std::string& id) {
    std::lock_guard lock(m_mutex);
    auto it = m_by_sandbox.find(sandbox_id);
    if (it == m_by_sandbox.end() || it->second.erase(id) == 0)
        return make_error(ErrorCode::NotFound, "watcher '" + id.substr(0, 64) + "' not found");
    if (it->second.empty()) m_by_sandbox.erase(it);
    return ok_status();
}

}  // namespace kiln::daemon::e2b
