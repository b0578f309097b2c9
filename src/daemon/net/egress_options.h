// What `open` may not reach unless the operator says so, and the per-sandbox connection limits.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "daemon/net/network_policy.h"

namespace kiln::daemon::net {

// Destinations no sandbox reaches whatever its policy or the operator says: "this network",
// loopback, link-local (most cloud metadata services), multicast, reserved and broadcast.
const std::vector<AllowRule>& always_dropped_ranges();
// What `open` drops on top of those unless the operator's `network_open_allow` names it: private,
// shared (carrier-grade NAT, where 100.100.100.200 lives), benchmarking and documentation ranges
// and the Azure host address 168.63.129.16, i.e. what a sandbox's "internet" must not include.
// No two entries overlap (nft refuses overlapping intervals in one set).
const std::vector<AllowRule>& open_dropped_ranges();
// The IPv6 counterpart, as nft text. Guests have no IPv6 today (dropped before conntrack), so
// this only matters if that ever changes: it must not become the way around the IPv4 list.
const std::vector<std::string>& open_dropped_ipv6_ranges();

bool overlaps(const AllowRule& a, const AllowRule& b);

// A tenant's allowlist may name public destinations only: an entry that reaches into
// open_dropped_ranges() must lie inside one of the operator's `network_open_allow` entries, or the
// tenant could point its sandbox at the host's private network (SSRF). Forbidden naming the entry.
// (Admin tokens are not checked: kilnd's operator may name anything.)
Status check_tenant_allowlist(const NetworkPolicy& policy, const std::vector<AllowRule>& operator_allow);

// kilnd-wide (config), the same for every sandbox it makes.
struct EgressOptions {
    // network_open_allow: non-public destinations `open` may reach after all (an internal package
    // mirror, say). Never reopens always_dropped_ranges(), the pool or the host's addresses.
    std::vector<AllowRule> open_allow;
    // Per sandbox, in every mode that lets anything out; 0 turns a limit off.
    uint32_t max_connections = 512;             // connections tracked at once (nft ct count)
    uint32_t new_connections_per_second = 100;  // new connections' rate (nft limit)
    uint32_t new_connection_burst = 200;        // ... and how many may come at once
};

// "A.B.C.D[/N][:port], ..." (the allowlist entry syntax, comma-separated; empty: none). Entries
// inside an always-dropped range are refused: they would silently stay unreachable.
Result<std::vector<AllowRule>> parse_open_allow(std::string_view text);

}  // namespace kiln::daemon::net
