// Folder watching for filesystem.Filesystem, on the agent's inotify `watch` op: WatchDir streams
// events as they come; CreateWatcher keeps a watch running in kilnd and GetWatcherEvents drains
// what it queued since the last call.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "kilnd/e2b/connect_codec.h"
#include "proto/messages.h"

namespace kiln::daemon::e2b {

// filesystem.FilesystemEvent of an agent event; nothing for the agent's overflow notice, which
// envd's protocol has no type for.
std::optional<json> fs_event_json(const proto::WatchEvent& event);

// One CreateWatcher's watch: a thread in kilnd running the agent's watch, its events queued
// (at most kMaxQueued; past that they are dropped) until GetWatcherEvents takes them.
class DirWatcher {
public:
    static constexpr size_t kMaxQueued = 10000;

    // Starts watching and returns once the agent watches (or the watch failed).
    static Result<std::shared_ptr<DirWatcher>> start(std::shared_ptr<SandboxLease> lease, std::string path, bool recursive);
    ~DirWatcher();  // stops the watch and waits for its thread

    // The events queued since the last call, or the error that ended the watch.
    Result<std::vector<json>> take();

private:
    DirWatcher() = default;

    std::shared_ptr<SandboxLease> m_lease;
    std::atomic<bool> m_stop{false};
    std::thread m_thread;
    std::mutex m_mutex;
    std::deque<json> m_queue;
    std::optional<Error> m_ended;  // why the watch ended, when it did
};

// CreateWatcher's watchers, by id, each bound to its sandbox: a caller reaches only its own.
class WatcherRegistry {
public:
    static constexpr size_t kMaxPerSandbox = 64;

    Result<std::string> add(const std::string& sandbox_id, std::shared_ptr<DirWatcher> watcher);
    std::shared_ptr<DirWatcher> find(const std::string& sandbox_id, const std::string& id);
    Status remove(const std::string& sandbox_id, const std::string& id);

private:
    std::mutex m_mutex;
    std::map<std::string, std::map<std::string, std::shared_ptr<DirWatcher>>> m_by_sandbox;
};

}  // namespace kiln::daemon::e2b
