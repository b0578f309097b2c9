// Folder watching for filesystem.Filesystem's WatchDir and CreateWatcher, by polling: each poll
// lists the folder again (envd_walk.h) and reports what changed since the last one as envd's
// events (create, write, remove, chmod; a rename shows as a remove and a create). Changes that
// cancel out between two polls (a file created and removed) are not seen.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/result.h"
#include "kilnd/e2b/connect_codec.h"
#include "vm/agent_client.h"

namespace kiln::daemon::e2b {

struct FsEvent {
    std::string name;  // relative to the watched folder
    std::string type;  // EVENT_TYPE_CREATE, _WRITE, _REMOVE, _CHMOD
};
json fs_event_json(const FsEvent& event);  // filesystem.FilesystemEvent

class PolledDir {
public:
    // Lists `root` once (not_found when it is missing, invalid_argument when not a folder).
    static Result<PolledDir> open(vm::AgentClient& agent, const std::string& root, bool recursive);
    // What changed since the last poll.
    Result<std::vector<FsEvent>> poll(vm::AgentClient& agent);

private:
    struct Seen {
        std::string type;
        uint64_t size = 0;
        int64_t mtime_ns = 0;
        uint32_t mode = 0;
    };
    Result<std::map<std::string, Seen>> list(vm::AgentClient& agent) const;

    std::string m_root;
    bool m_recursive = false;
    std::map<std::string, Seen> m_seen;
};

// CreateWatcher's watchers, by id, each bound to its sandbox: a caller reaches only its own.
class WatcherRegistry {
public:
    static constexpr size_t kMaxPerSandbox = 64;

    Result<std::string> add(const std::string& sandbox_id, PolledDir dir);
    // The events since the last call (a poll now).
    Result<std::vector<FsEvent>> events(const std::string& sandbox_id, const std::string& id, vm::AgentClient& agent);
    Status remove(const std::string& sandbox_id, const std::string& id);

private:
    struct Watcher {
        std::mutex mutex;  // one poll at a time
        PolledDir dir;
        explicit Watcher(PolledDir d) : dir(std::move(d)) {}
    };
    std::shared_ptr<Watcher> find(const std::string& sandbox_id, const std::string& id);

    std::mutex m_mutex;
    std::map<std::string, std::map<std::string, std::shared_ptr<Watcher>>> m_by_sandbox;
};

}  // namespace kiln::daemon::e2b
