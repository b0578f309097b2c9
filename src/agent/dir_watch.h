// DirWatch: inotify on a guest folder (and, recursive, every folder below it), turned into the
// protocol's watch events {name, type} in a bounded queue.
#pragma once

#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "proto/messages.h"

namespace kiln::agent {

class DirWatch {
public:
    // Events kept while the host is behind; past it they are dropped and one overflow event said.
    static constexpr size_t kMaxQueued = 4096;
    // inotify watches one recursive watch may hold (each folder below the path is one).
    static constexpr size_t kMaxFolders = 8192;

    // Watches request.path (a folder; a symlink to one is followed) and, when recursive, the
    // folders below it (not through symlinks).
    static Result<std::unique_ptr<DirWatch>> start(const proto::WatchRequest& request);
    DirWatch(const DirWatch&) = delete;
    DirWatch& operator=(const DirWatch&) = delete;

    int fd() const { return m_fd.get(); }
    size_t folders() const { return m_prefixes.size(); }

    // Reads every inotify event ready on fd() (non-blocking) into the queue.
    void read_events();
    // Parses a buffer of struct inotify_event records (what read_events() read) into the queue.
    void take_events(const char* buf, size_t len);

    // The next event to send, oldest first; the overflow event comes after the events queued
    // before the loss, and nothing is queued between the loss and it.
    std::optional<proto::WatchEvent> next_event();
    bool has_events() const { return !m_queue.empty() || m_overflowed; }
    // Once the watched folder itself is gone (removed, moved away, unmounted): why. The stream
    // ends with this error after the queued events.
    const std::optional<Error>& ended() const { return m_ended; }

private:
    DirWatch(UniqueFd fd, proto::WatchRequest request) : m_fd(std::move(fd)), m_request(std::move(request)) {}

    // Adds a watch on the folder `relative` (below the root; "" is the root) and, when
    // recursive, on the folders below it. With report_contents, what the folders already hold
    // is queued as create events (a folder made and filled before its watch was in place).
    Status add_tree(const std::string& relative, bool report_contents);
    Status add_folder(const std::string& relative);
    void forget_tree(const std::string& relative);
    void push(std::string name, const char* type);
    void overflow();
    std::string full_path(const std::string& relative) const;

    UniqueFd m_fd;
    proto::WatchRequest m_request;
    std::map<int, std::string> m_prefixes;  // watch descriptor -> folder relative to the root ("" the root)
    std::deque<proto::WatchEvent> m_queue;
    bool m_overflowed = false;
    std::optional<Error> m_ended;
};

}  // namespace kiln::agent
