// Where a new sandbox goes in a fleet (docs/fleet.md): a pure function of the hosts as the store
// last saw them, so that it is tested without hosts and benchmarked without VMs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "daemon/fleet/host_registry.h"

namespace kiln::daemon::fleet {

// One host as placement sees it: from the hosts table (heartbeat, drain, capacity) and the
// sandboxes table (its live sandboxes and their memory).
struct HostLoad {
    std::string name;
    bool alive = false;     // heartbeat within host_timeout_seconds
    bool draining = false;  // takes no new sandboxes
    int64_t max_sandboxes = 0;
    int64_t max_memory_mib = 0;
    int64_t live_sandboxes = 0;  // creating + running
    int64_t used_memory_mib = 0;
    // Holds what the create restores from already: the built-in template's bake, or the
    // snapshot's files. A host without it bakes first (built-in) or receives a copy (snapshot).
    bool holds_source = false;
};

// Placement's view of the registry's hosts (HostRegistry::hosts): alive unless dead (a draining
// host is alive and draining), its live sandboxes and their memory, and whether it is one of
// `source_holders`.
std::vector<HostLoad> host_loads(const std::vector<HostStatus>& hosts, const std::vector<std::string>& source_holders);

struct PlacementRequest {
    uint32_t memory_mib = 256;
    // Only a host holding the source will do (a snapshot whose files cannot be copied to another).
    bool must_hold_source = false;
};

// The host to run the sandbox on, or:
//  - Unavailable (503) when no host is alive and not draining (with must_hold_source: no such
//    host holds the source);
//  - QuotaExceeded (429) when every such host is full (max_sandboxes or max_memory_mib).
// Among hosts with room, one holding the source wins over one that would have to bake or copy
// (a bake or copy costs far more than the imbalance of one sandbox); then the fewest live
// sandboxes; then the most free memory; then the name, so the choice is the same on every host.
Result<std::string> choose_host(const std::vector<HostLoad>& hosts, const PlacementRequest& request);

}  // namespace kiln::daemon::fleet
