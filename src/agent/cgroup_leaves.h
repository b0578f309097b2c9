// CgroupLeaves: the per-exec cgroup v2 leaves under the agent's cgroup root, reused once empty.
//
// Every exec runs in a leaf of its own so that its whole tree can be signalled and killed. Making
// and removing a leaf per exec costs two syscalls that are slow under emulation (mkdir, rmdir) and
// an open; a leaf that is empty again when its exec ends is kept, with its files open, for the next.
// Single-threaded: owned by the server's loop.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.h"

namespace kiln::agent {

struct CgroupLeaf {
    std::string dir;
    UniqueFd procs;   // cgroup.procs, open for writing: the exec child writes "0" to join
    UniqueFd events;  // cgroup.events, read to see whether the leaf is empty again
};

class CgroupLeaves {
public:
    // Spare leaves kept at most; more are removed as their execs end.
    static constexpr size_t kMaxSpare = 16;

    // `root`: an existing cgroup v2 folder the agent may create leaves in; empty: no leaves at all.
    explicit CgroupLeaves(std::string root) : m_root(std::move(root)) {}
    CgroupLeaves(const CgroupLeaves&) = delete;
    CgroupLeaves& operator=(const CgroupLeaves&) = delete;

    // An empty leaf: a spare one, or a new exec-N. Nothing without a root, or when the kernel
    // refuses (the exec then runs in its process group only; the reason is logged).
    std::optional<CgroupLeaf> acquire();
    // Takes a leaf back once its exec has ended: kept as a spare if nothing runs in it any more,
    // otherwise removed as soon as its last process has gone (see remove_emptied()).
    void release(CgroupLeaf leaf);
    // Makes sure one spare leaf exists (creates it now if none): the next acquire() is cheap.
    void keep_one_spare();
    // Removes the released leaves whose background processes have all gone. Called on child exits.
    void remove_emptied();

    size_t spare_count() const { return m_spare.size(); }
    size_t busy_count() const { return m_busy.size(); }

private:
    std::string m_root;
    uint64_t m_created = 0;
    std::vector<CgroupLeaf> m_spare;
    std::vector<std::string> m_busy;  // released with processes still inside: rmdir once empty
};

// Whether a cgroup.events file (open for reading) says "populated 0". False when unreadable.
bool cgroup_is_empty(int events_fd);

}  // namespace kiln::agent
