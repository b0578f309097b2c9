// Generates the nftables rulesets; the isolation guarantees of docs/network.md are enforced here.
#include "daemon/net/nft_rules.h"

#include <algorithm>

#include "daemon/net/egress_options.h"
#include "daemon/net/guest_addressing.h"

namespace kiln::daemon::net {
namespace {

uint32_t mask(uint8_t prefix) { return prefix == 0 ? 0 : ~uint32_t(0) << (32 - prefix); }
bool contains(const AllowRule& net, uint32_t address) { return (address & mask(net.prefix)) == net.network; }
std::string cidr(const AllowRule& net) { return format_ipv4(net.network) + "/" + std::to_string(net.prefix); }
std::string destination(const AllowRule& net) { return net.prefix == 32 ? format_ipv4(net.network) : cidr(net); }

// One accept per entry; an entry with a port opens TCP and UDP to that port only.
void accept_rules(const std::vector<AllowRule>& allow, std::vector<std::string>& rules) {
    for (const AllowRule& rule : allow) {
        std::string dst = "ip daddr " + destination(rule);
        if (rule.port == 0) {
            rules.push_back(dst + " accept");
        } else {
            rules.push_back(dst + " tcp dport " + std::to_string(rule.port) + " accept");
            rules.push_back(dst + " udp dport " + std::to_string(rule.port) + " accept");
        }
    }
}

template <typename T, typename F>
std::string joined(const std::vector<T>& items, F text) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : ", ") + text(item);
    return out;
}

// `open`: public destinations only, unless the operator's list names a non-public one. The DNS
// the gateway forwards (ct status dnat: only the dns chain below DNATs) goes to the configured
// resolver, which is often private (a VPC or office resolver) and is what `open` promises.
void open_rules(const PolicyContext& context, std::vector<std::string>& rules) {
    if (context.dns_resolver)
        rules.push_back("ct status dnat ip daddr " + format_ipv4(context.dns_resolver) +
                        " meta l4proto { tcp, udp } th dport 53 accept");
    accept_rules(context.egress.open_allow, rules);
    rules.push_back("ip daddr { " + joined(open_dropped_ranges(), destination) + " } counter drop");
    rules.push_back("ip6 daddr { " + joined(open_dropped_ipv6_ranges(), [](const std::string& s) { return s; }) +
                    " } counter drop");
    rules.push_back("accept");
}

}  // namespace

std::vector<std::string> policy_rules(const NetworkPolicy& policy, const PolicyContext& context) {
    std::vector<std::string> rules;
    switch (policy.mode) {
        case NetworkMode::None: break;
        case NetworkMode::Open: open_rules(context, rules); break;
        case NetworkMode::Allowlist: accept_rules(policy.allow, rules); break;
    }
    return rules;
}

std::string sandbox_policy_additions(const NetworkPolicy& policy, const PolicyContext& context,
                                     const std::vector<uint32_t>& new_host_addresses) {
    std::string r;
    // Appended after the fixed drops, as sandbox_ruleset places them: host addresses that appeared
    // since the table was loaded are dropped before any accept.
    std::vector<uint32_t> hosts = new_host_addresses;
    std::sort(hosts.begin(), hosts.end());
    hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
    if (!hosts.empty()) {
        std::string set;
        for (uint32_t h : hosts) set += (set.empty() ? "" : ", ") + format_ipv4(h);
        r += "add rule inet kiln forward ip daddr { " + set + " } drop\n";
    }
    for (const auto& rule : policy_rules(policy, context)) r += "add rule inet kiln forward " + rule + "\n";
    return r;
}

std::string sandbox_ruleset(const SandboxRulesInput& in) {
    const std::string tap = std::string("\"") + kTapName + "\"";
    const std::string veth = std::string("\"") + kNetnsVethName + "\"";
    const std::string guest = kGuestAddress;
    const std::string gateway = kGatewayAddress;

    // One interval set; nft refuses overlapping intervals, so host addresses already covered by a
    // dropped range are left out.
    std::vector<AllowRule> dropped = always_dropped_ranges();
    dropped.push_back(in.pool);
    std::vector<uint32_t> hosts = in.host_addresses;
    std::sort(hosts.begin(), hosts.end());
    hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
    std::string drop_set;
    for (const auto& net : dropped) drop_set += (drop_set.empty() ? "" : ", ") + cidr(net);
    for (uint32_t h : hosts) {
        bool covered = std::any_of(dropped.begin(), dropped.end(), [&](const AllowRule& n) { return contains(n, h); });
        if (!covered) drop_set += ", " + format_ipv4(h);
    }

    // Loaded once into a fresh namespace: nothing to replace, so no add-then-delete prelude
    // (which would make nft fetch the namespace's ruleset first).
    std::string r;
    r += "table inet kiln {\n";
    // Before conntrack: a spoofed or IPv6 packet from the guest never creates state.
    r += "  chain guard {\n";
    r += "    type filter hook prerouting priority raw; policy accept;\n";
    r += "    iifname " + tap + " meta nfproto ipv6 drop\n";
    r += "    iifname " + tap + " ip saddr != " + guest + " drop\n";
    r += "  }\n";
    // DNS: the guest asks the gateway; forwarded to the resolver, which the forward chain then
    // checks against the policy like any other destination.
    r += "  chain dns {\n";
    r += "    type nat hook prerouting priority dstnat; policy accept;\n";
    if (in.dns_resolver) {
        std::string to = format_ipv4(in.dns_resolver) + ":53";
        r += "    iifname " + tap + " ip daddr " + gateway + " udp dport 53 dnat ip to " + to + "\n";
        r += "    iifname " + tap + " ip daddr " + gateway + " tcp dport 53 dnat ip to " + to + "\n";
    }
    r += "  }\n";
    // Nothing in the namespace itself listens for the guest.
    r += "  chain input {\n";
    r += "    type filter hook input priority filter; policy drop;\n";
    r += "    iifname \"lo\" accept\n";
    r += "    ct state established,related accept\n";
    r += "  }\n";
    r += "  chain forward {\n";
    r += "    type filter hook forward priority filter; policy drop;\n";
    r += "    ct state established,related accept\n";
    r += "    iifname != " + tap + " drop\n";
    r += "    oifname != " + veth + " drop\n";
    r += "    ip daddr { " + drop_set + " } drop\n";
    // Per sandbox (each has its own namespace, so its own conntrack table and these rules' own
    // state), before the policy: a guest cannot flood the host's conntrack table or the uplink
    // with new connections. Only new connections get here (replies were accepted above).
    const EgressOptions& e = in.egress;
    if (e.new_connections_per_second)
        r += "    ct state new limit rate over " + std::to_string(e.new_connections_per_second) + "/second burst " +
             std::to_string(e.new_connection_burst) + " packets counter drop\n";
    if (e.max_connections) r += "    ct state new ct count over " + std::to_string(e.max_connections) + " counter drop\n";
    for (const auto& rule : policy_rules(in.policy, PolicyContext{in.egress, in.dns_resolver})) r += "    " + rule + "\n";
    r += "  }\n";
    r += "  chain egress {\n";
    r += "    type nat hook postrouting priority srcnat; policy accept;\n";
    r += "    oifname " + veth + " masquerade\n";
    r += "  }\n";
    r += "}\n";
    return r;
}

std::string host_ruleset(const AllowRule& pool, const std::string& table) {
    const std::string veths = std::string("\"") + kHostVethPrefix + "*\"";
    const std::string p = cidr(pool);
    std::string r;
    r += "table ip " + table + "\n";
    r += "delete table ip " + table + "\n";
    r += "table ip " + table + " {\n";
    // A sandbox reaches no host service: not kilnd's port, not loopback-bound ones (those are
    // unroutable from a veth anyway), not any service on any host address.
    r += "  chain input {\n";
    r += "    type filter hook input priority filter - 10; policy accept;\n";
    r += "    iifname " + veths + " drop\n";
    r += "  }\n";
    r += "  chain forward {\n";
    r += "    type filter hook forward priority filter - 10; policy accept;\n";
    r += "    iifname " + veths + " oifname " + veths + " drop\n";
    r += "    iifname " + veths + " ip daddr " + p + " drop\n";
    r += "    oifname " + veths + " ct state established,related accept\n";
    r += "    oifname " + veths + " drop\n";
    r += "  }\n";
    r += "  chain egress {\n";
    r += "    type nat hook postrouting priority srcnat; policy accept;\n";
    r += "    ip saddr " + p + " oifname != " + veths + " masquerade\n";
    r += "  }\n";
    r += "}\n";
    return r;
}

std::string host_ruleset_delete(const std::string& table) {
    return "table ip " + table + "\ndelete table ip " + table + "\n";
}

}  // namespace kiln::daemon::net
