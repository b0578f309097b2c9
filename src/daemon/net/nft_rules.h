// The nftables rulesets, as text for one `nft -f -` each: the per-sandbox table and the host's `kiln` table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "daemon/net/network_policy.h"

namespace kiln::daemon::net {

struct SandboxRulesInput {
    NetworkPolicy policy;
    AllowRule pool;                       // every sandbox's veth addresses live here
    std::vector<uint32_t> host_addresses; // the host's own IPv4 addresses (never reachable)
    uint32_t dns_resolver = 0;            // 0: no DNS forwarding at the gateway
};

// `table inet kiln` inside one sandbox's namespace. Order of the forward chain: replies, then the
// fixed drops (spoofed sources, the host, the pool, link-local, multicast), then the policy.
std::string sandbox_ruleset(const SandboxRulesInput& input);

// `table ip kiln` on the host: input from sandbox veths dropped, sandbox-to-sandbox forwarding
// dropped, egress masqueraded. Replaces any previous version of the table atomically.
// `table` is "kiln" for kilnd; tests use their own name and pool beside a running kilnd.
std::string host_ruleset(const AllowRule& pool, const std::string& table = "kiln");
// Removes the host table (tests; kilnd leaves it in place).
std::string host_ruleset_delete(const std::string& table = "kiln");

}  // namespace kiln::daemon::net
