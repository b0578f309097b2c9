// The nftables rulesets, as text for one `nft -f -` each: the per-sandbox table and the host's `kiln` table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "daemon/net/egress_options.h"
#include "daemon/net/network_policy.h"

namespace kiln::daemon::net {

struct SandboxRulesInput {
    NetworkPolicy policy;
    AllowRule pool;                       // every sandbox's veth addresses live here
    std::vector<uint32_t> host_addresses; // the host's own IPv4 addresses (never reachable)
    uint32_t dns_resolver = 0;            // 0: no DNS forwarding at the gateway
    EgressOptions egress;                 // kilnd's open-mode allowlist and connection limits
};

// What a policy's rules depend on besides the policy itself (the same for every sandbox of a kilnd).
struct PolicyContext {
    const EgressOptions& egress;
    uint32_t dns_resolver = 0;
};

// `table inet kiln` inside one sandbox's namespace. Order of the forward chain: replies, then the
// fixed drops (spoofed sources, the host, the pool, link-local, multicast), then the connection
// limits, then the policy.
std::string sandbox_ruleset(const SandboxRulesInput& input);
// The forward chain's rules for `policy`, after the fixed drops and limits (none for mode none).
// `open`: the resolver the gateway forwards DNS to, then the operator's open_allow, then the
// non-public ranges dropped, then everything else accepted.
std::vector<std::string> policy_rules(const NetworkPolicy& policy, const PolicyContext& context);
// What turns a table loaded by sandbox_ruleset with policy none into one with `policy`: `add rule`
// commands only, appended to the forward chain (after its fixed drops), the first dropping
// `new_host_addresses` (host addresses that appeared since the table was loaded). Additions only,
// because a transaction that deletes or flushes anything waits in the kernel for an RCU grace
// period (~10 ms measured, against ~0.1 ms for these additions).
std::string sandbox_policy_additions(const NetworkPolicy& policy, const PolicyContext& context,
                                     const std::vector<uint32_t>& new_host_addresses);

// `table ip kiln` on the host: input from sandbox veths dropped, sandbox-to-sandbox forwarding
// dropped, egress masqueraded. Replaces any previous version of the table atomically.
// `table` is "kiln" for kilnd; tests use their own name and pool beside a running kilnd.
std::string host_ruleset(const AllowRule& pool, const std::string& table = "kiln");
// Removes the host table (tests; kilnd leaves it in place).
std::string host_ruleset_delete(const std::string& table = "kiln");

}  // namespace kiln::daemon::net
