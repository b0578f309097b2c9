// A guest folder's entries to a depth, through the agent's one-level `list`: ListDir's depth and
// the polling watchers' snapshots. Bounded: at most kMaxWalkEntries entries in all.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "proto/messages.h"
#include "vm/agent_client.h"

namespace kiln::daemon::e2b {

inline constexpr size_t kMaxWalkEntries = 100000;

struct WalkEntry {
    std::string path;  // full path in the guest
    proto::FileInfo info;
};

// Entries under `root` down to `depth` levels (1: its own entries), sorted by path. Folders met
// on the way that vanish or cannot be read are skipped; `root` itself must be a readable folder.
Result<std::vector<WalkEntry>> walk_dir(vm::AgentClient& agent, const std::string& root, uint32_t depth);

std::string join_path(const std::string& dir, const std::string& name);

}  // namespace kiln::daemon::e2b
