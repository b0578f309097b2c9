// Placement of a new sandbox; see placement.h.
#include "daemon/fleet/placement.h"

#include <algorithm>
#include <tuple>

namespace kiln::daemon::fleet {

namespace {
bool has_room(const HostLoad& h, const PlacementRequest& request) {
    return h.live_sandboxes < h.max_sandboxes && h.used_memory_mib + int64_t(request.memory_mib) <= h.max_memory_mib;
}

// Smaller is better.
auto rank(const HostLoad& h) {
    return std::make_tuple(!h.holds_source, h.live_sandboxes, -(h.max_memory_mib - h.used_memory_mib), h.name);
}
}  // namespace

std::vector<HostLoad> host_loads(const std::vector<HostStatus>& hosts, const std::vector<std::string>& source_holders) {
    std::vector<HostLoad> out;
    out.reserve(hosts.size());
    for (const auto& h : hosts) {
        HostLoad load;
        load.name = h.record.spec.name;
        load.alive = h.state != HostState::Dead;
        load.draining = h.state == HostState::Draining;
        load.max_sandboxes = h.record.spec.max_sandboxes;
        load.max_memory_mib = h.record.spec.max_memory_mib;
        load.live_sandboxes = h.record.live_sandboxes;
        load.used_memory_mib = h.record.memory_mib_in_use;
        load.holds_source = std::find(source_holders.begin(), source_holders.end(), load.name) != source_holders.end();
        out.push_back(std::move(load));
    }
    return out;
}

Result<std::string> choose_host(const std::vector<HostLoad>& hosts, const PlacementRequest& request) {
    const HostLoad* best = nullptr;
    int open_hosts = 0;
    for (const auto& h : hosts) {
        if (!h.alive || h.draining || (request.must_hold_source && !h.holds_source)) continue;
        ++open_hosts;
        if (!has_room(h, request)) continue;
        if (!best || rank(h) < rank(*best)) best = &h;
    }
    if (best) return best->name;
    if (open_hosts == 0)
        return make_error(ErrorCode::Unavailable, std::string(request.must_hold_source ? "no host holding the snapshot"
                                                                                       : "no host of the fleet") +
                                                      " is alive and not draining (" + std::to_string(hosts.size()) + " known)");
    return make_error(ErrorCode::QuotaExceeded, "no host has room for a sandbox of " + std::to_string(request.memory_mib) +
                                                    " MiB: all " + std::to_string(open_hosts) +
                                                    " open hosts are at max_sandboxes or max_memory_mib");
}

}  // namespace kiln::daemon::fleet
