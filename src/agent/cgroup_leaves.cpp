// Creating, reusing and removing the per-exec cgroup v2 leaves.
#include "agent/cgroup_leaves.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "agent/log.h"

namespace kiln::agent {

bool cgroup_is_empty(int events_fd) {
    // "populated 0\nfrozen 0\n": only live processes count (an exited, unreaped one does not).
    char buf[128];
    ssize_t n = pread(events_fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return false;
    std::string_view text(buf, static_cast<size_t>(n));
    size_t at = text.find("populated ");
    return at != std::string_view::npos && at + 10 < text.size() && text[at + 10] == '0';
}

std::optional<CgroupLeaf> CgroupLeaves::acquire() {
    if (m_root.empty()) return std::nullopt;
    if (!m_spare.empty()) {
        CgroupLeaf leaf = std::move(m_spare.back());
        m_spare.pop_back();
        return leaf;
    }
    CgroupLeaf leaf;
    for (int attempt = 0;; ++attempt) {  // a name already taken (another agent's leaf) is skipped
        leaf.dir = m_root + "/exec-" + std::to_string(++m_created);
        if (mkdir(leaf.dir.c_str(), 0755) == 0) break;
        if (errno != EEXIST || attempt == 100) {
            log_line("cannot create cgroup " + leaf.dir + ": " + std::strerror(errno) + "; using the process group only");
            return std::nullopt;
        }
    }
    leaf.procs.reset(open((leaf.dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
    leaf.events.reset(open((leaf.dir + "/cgroup.events").c_str(), O_RDONLY | O_CLOEXEC));
    if (!leaf.procs) {
        log_line("cannot open " + leaf.dir + "/cgroup.procs: " + std::strerror(errno) + "; using the process group only");
        rmdir(leaf.dir.c_str());
        return std::nullopt;
    }
    return leaf;
}

void CgroupLeaves::keep_one_spare() {
    if (!m_spare.empty()) return;
    if (auto leaf = acquire()) m_spare.push_back(std::move(*leaf));
}

void CgroupLeaves::release(CgroupLeaf leaf) {
    if (leaf.dir.empty()) return;
    if (leaf.events && cgroup_is_empty(leaf.events.get()) && m_spare.size() < kMaxSpare) {
        m_spare.push_back(std::move(leaf));
        return;
    }
    leaf.procs.reset();
    leaf.events.reset();
    if (rmdir(leaf.dir.c_str()) != 0 && errno != ENOENT) m_busy.push_back(std::move(leaf.dir));
}

void CgroupLeaves::remove_emptied() {
    std::erase_if(m_busy, [](const std::string& dir) { return rmdir(dir.c_str()) == 0 || errno == ENOENT; });
}

}  // namespace kiln::agent
