#include "kilnd/e2b/envd_watch.h"

#include <condition_variable>

#include "base/random.h"
#include "vm/agent_client.h"

namespace kiln::daemon::e2b {

std::optional<json> fs_event_json(const proto::WatchEvent& event) {
    namespace we = proto::watch_event;
    const char* type = event.type == we::kCreate   ? "EVENT_TYPE_CREATE"
                       : event.type == we::kWrite  ? "EVENT_TYPE_WRITE"
                       : event.type == we::kRemove ? "EVENT_TYPE_REMOVE"
                       : event.type == we::kRename ? "EVENT_TYPE_RENAME"
                       : event.type == we::kChmod  ? "EVENT_TYPE_CHMOD"
                                                   : nullptr;
    if (!type) return std::nullopt;
    return json{{"name", event.name}, {"type", type}};
}

Result<std::shared_ptr<DirWatcher>> DirWatcher::start(std::shared_ptr<SandboxLease> lease, std::string path, bool recursive) {
    std::shared_ptr<DirWatcher> w(new DirWatcher());
    w->m_lease = std::move(lease);
    // The start (or the failure before it) is handed back through these.
    struct Startup {
        std::mutex mutex;
        std::condition_variable cv;
        bool started = false;
        std::optional<Error> failed;
    };
    auto startup = std::make_shared<Startup>();
    DirWatcher* raw = w.get();  // the thread ends before the watcher is destroyed (~DirWatcher joins)
    w->m_thread = std::thread([raw, startup, path = std::move(path), recursive] {
        auto on_event = [raw](const proto::WatchEvent& e) {
            auto j = fs_event_json(e);
            if (!j) return;
            std::lock_guard lock(raw->m_mutex);
            if (raw->m_queue.size() < kMaxQueued) raw->m_queue.push_back(std::move(*j));
        };
        auto on_started = [startup] {
            std::lock_guard lock(startup->mutex);
            startup->started = true;
            startup->cv.notify_all();
        };
        Status st = raw->m_lease->agent().watch(path, recursive, on_event, raw->m_stop, on_started);
        Error why = st.ok() ? make_error(ErrorCode::NotFound, "the watcher was removed") : st.error();
        {
            std::lock_guard lock(raw->m_mutex);
            raw->m_ended = why;
        }
        raw->m_lease.reset();  // a sandbox that went away is not held by a watcher nobody removed
        std::lock_guard lock(startup->mutex);
        if (!startup->started) startup->failed = why;
        startup->cv.notify_all();
    });
    std::unique_lock lock(startup->mutex);
    if (!startup->cv.wait_for(lock, std::chrono::seconds(30), [&] { return startup->started || startup->failed; }))
        return make_error(ErrorCode::Timeout, "the guest did not start watching within 30 s");
    if (startup->failed) return *startup->failed;
    return w;
}

DirWatcher::~DirWatcher() {
    m_stop = true;
    if (m_thread.joinable()) m_thread.join();
}

Result<std::vector<json>> DirWatcher::take() {
    std::lock_guard lock(m_mutex);
    if (m_queue.empty() && m_ended) return *m_ended;
    std::vector<json> out(std::make_move_iterator(m_queue.begin()), std::make_move_iterator(m_queue.end()));
    m_queue.clear();
    return out;
}

Result<std::string> WatcherRegistry::add(const std::string& sandbox_id, std::shared_ptr<DirWatcher> watcher) {
    std::string id = TRY(random_hex(16));
    std::lock_guard lock(m_mutex);
    auto& watchers = m_by_sandbox[sandbox_id];
    if (watchers.size() >= kMaxPerSandbox)
        return make_error(ErrorCode::ResourceExhausted,
                          "this sandbox already has " + std::to_string(kMaxPerSandbox) + " watchers; remove one first");
    watchers.emplace(id, std::move(watcher));
    return id;
}

std::shared_ptr<DirWatcher> WatcherRegistry::find(const std::string& sandbox_id, const std::string& id) {
    std::lock_guard lock(m_mutex);
    auto it = m_by_sandbox.find(sandbox_id);
    if (it == m_by_sandbox.end()) return nullptr;
    auto w = it->second.find(id);
    return w == it->second.end() ? nullptr : w->second;
}

Status WatcherRegistry::remove(const std::string& sandbox_id, const std::string& id) {
    std::shared_ptr<DirWatcher> gone;  // stopped outside the lock: its thread may take a moment
    {
        std::lock_guard lock(m_mutex);
        auto it = m_by_sandbox.find(sandbox_id);
        if (it == m_by_sandbox.end()) return make_error(ErrorCode::NotFound, "watcher '" + id.substr(0, 64) + "' not found");
        auto w = it->second.find(id);
        if (w == it->second.end()) return make_error(ErrorCode::NotFound, "watcher '" + id.substr(0, 64) + "' not found");
        gone = std::move(w->second);
        it->second.erase(w);
        if (it->second.empty()) m_by_sandbox.erase(it);
    }
    return ok_status();
}

}  // namespace kiln::daemon::e2b
