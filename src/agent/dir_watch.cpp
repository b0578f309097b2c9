// inotify events mapped to watch events: create (IN_CREATE, IN_MOVED_TO), write (IN_MODIFY),
// remove (IN_DELETE), rename (IN_MOVED_FROM), chmod (IN_ATTRIB); the root's own removal or move
// ends the watch.
#include "agent/dir_watch.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "agent/errno_codes.h"

namespace kiln::agent {
namespace {

constexpr uint32_t kEntryEvents = IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_ATTRIB;
constexpr uint32_t kSelfEvents = IN_DELETE_SELF | IN_MOVE_SELF;

std::string join(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "/" + name;
}

}  // namespace

Result<std::unique_ptr<DirWatch>> DirWatch::start(const proto::WatchRequest& request) {
    struct stat st;
    if (stat(request.path.c_str(), &st) != 0) return path_error("watch", request.path, errno);
    if (!S_ISDIR(st.st_mode))
        return make_error(ErrorCode::InvalidArgument, "cannot watch '" + request.path + "': it is not a directory");
    UniqueFd fd(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!fd) return path_error("watch (inotify_init1)", request.path, errno);
    std::unique_ptr<DirWatch> watch(new DirWatch(std::move(fd), request));
    TRY(watch->add_tree("", false));
    return watch;
}

std::string DirWatch::full_path(const std::string& relative) const {
    if (relative.empty()) return m_request.path;
    return m_request.path.back() == '/' ? m_request.path + relative : m_request.path + "/" + relative;
}

Status DirWatch::add_folder(const std::string& relative) {
    if (m_prefixes.size() >= kMaxFolders)
        return make_error(ErrorCode::IoError, "cannot watch '" + m_request.path + "': more than " +
                                                  std::to_string(kMaxFolders) + " folders below it");
    // The root may be a symlink to a folder (followed, as stat would); nothing below it is.
    uint32_t mask = kEntryEvents | kSelfEvents | IN_ONLYDIR | (relative.empty() ? 0 : IN_DONT_FOLLOW);
    int wd = inotify_add_watch(m_fd.get(), full_path(relative).c_str(), mask);
    if (wd < 0) return path_error("watch", full_path(relative), errno);
    m_prefixes[wd] = relative;  // a folder reached twice (a hard-linked bind mount) keeps one name
    return ok_status();
}

Status DirWatch::add_tree(const std::string& relative, bool report_contents) {
    TRY(add_folder(relative));
    if (!m_request.recursive && !report_contents) return ok_status();
    std::vector<std::string> pending{relative};
    while (!pending.empty()) {
        std::string folder = std::move(pending.back());
        pending.pop_back();
        DIR* dir = opendir(full_path(folder).c_str());
        if (!dir) continue;  // gone or unreadable meanwhile: its own events say what happened
        while (struct dirent* entry = readdir(dir)) {
            std::string name = entry->d_name;
            if (name == "." || name == "..") continue;
            std::string child = join(folder, name);
            if (report_contents) push(child, proto::watch_event::kCreate);
            bool is_dir = entry->d_type == DT_DIR;
            if (entry->d_type == DT_UNKNOWN) {
                struct stat st;
                is_dir = lstat(full_path(child).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
            }
            if (!is_dir || !m_request.recursive) continue;
            Status added = add_folder(child);
            if (!added.ok()) {
                closedir(dir);
                return added;
            }
            pending.push_back(child);
        }
        closedir(dir);
    }
    return ok_status();
}

void DirWatch::forget_tree(const std::string& relative) {
    // Folders moved out from under the watch: their names would be wrong from now on.
    for (auto it = m_prefixes.begin(); it != m_prefixes.end();) {
        const std::string& p = it->second;
        if (p == relative || (p.size() > relative.size() && p.compare(0, relative.size(), relative) == 0 &&
                              p[relative.size()] == '/')) {
            inotify_rm_watch(m_fd.get(), it->first);
            it = m_prefixes.erase(it);
        } else {
            ++it;
        }
    }
}

void DirWatch::read_events() {
    // Aligned for struct inotify_event; a few events per read.
    alignas(struct inotify_event) char buf[16 * 1024];
    for (;;) {
        ssize_t n = ::read(m_fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        take_events(buf, static_cast<size_t>(n));
    }
}

void DirWatch::take_events(const char* buf, size_t len) {
    size_t offset = 0;
    while (offset + sizeof(struct inotify_event) <= len) {
        struct inotify_event ev;
        std::memcpy(&ev, buf + offset, sizeof ev);
        size_t record = sizeof ev + ev.len;
        if (record > len - offset) return;  // a truncated record: nothing after it is trustworthy
        std::string name(buf + offset + sizeof ev, ev.len);
        name.resize(strnlen(name.c_str(), name.size()));  // NUL padding
        offset += record;

        if (ev.mask & IN_Q_OVERFLOW) {
            overflow();
            continue;
        }
        auto it = m_prefixes.find(ev.wd);
        if (it == m_prefixes.end()) continue;  // a watch already forgotten
        const std::string prefix = it->second;
        if (ev.mask & IN_IGNORED) {
            m_prefixes.erase(it);
            if (prefix.empty() && !m_ended)
                m_ended = make_error(ErrorCode::NotFound, "the watched folder '" + m_request.path + "' went away");
            continue;
        }
        if (ev.mask & (kSelfEvents | IN_UNMOUNT)) {
            // A folder below reports its own end through its parent's IN_DELETE/IN_MOVED_FROM.
            if (prefix.empty() && !m_ended) {
                const char* how = ev.mask & IN_MOVE_SELF ? "was moved" : ev.mask & IN_UNMOUNT ? "was unmounted" : "was removed";
                m_ended = make_error(ErrorCode::NotFound, "the watched folder '" + m_request.path + "' " + how);
            }
            continue;
        }
        if (name.empty()) continue;
        const std::string relative = join(prefix, name);
        const bool is_dir = ev.mask & IN_ISDIR;
        if (ev.mask & (IN_CREATE | IN_MOVED_TO)) {
            push(relative, proto::watch_event::kCreate);
            // A new folder below a recursive watch: watched from now on, and what it already holds reported.
            if (is_dir && m_request.recursive && !add_tree(relative, true).ok()) overflow();
        }
        if (ev.mask & IN_MODIFY) push(relative, proto::watch_event::kWrite);
        if (ev.mask & IN_ATTRIB) push(relative, proto::watch_event::kChmod);
        if (ev.mask & IN_MOVED_FROM) {
            push(relative, proto::watch_event::kRename);
            if (is_dir && m_request.recursive) forget_tree(relative);
        }
        if (ev.mask & IN_DELETE) push(relative, proto::watch_event::kRemove);
    }
}

void DirWatch::push(std::string name, const char* type) {
    if (m_overflowed) return;  // nothing between the loss and its overflow event
    if (m_queue.size() >= kMaxQueued) {
        overflow();
        return;
    }
    m_queue.push_back(proto::WatchEvent{std::move(name), type});
}

void DirWatch::overflow() { m_overflowed = true; }

std::optional<proto::WatchEvent> DirWatch::next_event() {
    if (!m_queue.empty()) {
        proto::WatchEvent event = std::move(m_queue.front());
        m_queue.pop_front();
        return event;
    }
    if (m_overflowed) {
        m_overflowed = false;
        return proto::WatchEvent{"", proto::watch_event::kOverflow};
    }
    return std::nullopt;
}

}  // namespace kiln::agent
