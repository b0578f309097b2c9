// The destination ranges of docs/network.md ("Policy") and the operator's open-mode allowlist.
#include "daemon/net/egress_options.h"

namespace kiln::daemon::net {
namespace {

uint32_t prefix_mask(uint8_t prefix) { return prefix == 0 ? 0 : ~uint32_t(0) << (32 - prefix); }

std::string trimmed(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return std::string(s);
}

}  // namespace

const std::vector<AllowRule>& always_dropped_ranges() {
    static const std::vector<AllowRule> ranges = {
        {0x00000000, 8, 0},   // 0.0.0.0/8
        {0x7f000000, 8, 0},   // 127.0.0.0/8
        {0xa9fe0000, 16, 0},  // 169.254.0.0/16: link-local, 169.254.169.254 of most clouds
        {0xe0000000, 3, 0},   // 224.0.0.0/3: multicast 224/4, reserved 240/4, broadcast
    };
    return ranges;
}

const std::vector<AllowRule>& open_dropped_ranges() {
    static const std::vector<AllowRule> ranges = {
        {0x0a000000, 8, 0},   // 10.0.0.0/8 (RFC 1918)
        {0x64400000, 10, 0},  // 100.64.0.0/10: shared address space; Alibaba's 100.100.100.200
        {0xa83f8110, 32, 0},  // 168.63.129.16: Azure's host (DNS, DHCP, health, agent)
        {0xac100000, 12, 0},  // 172.16.0.0/12 (RFC 1918)
        {0xc0000000, 24, 0},  // 192.0.0.0/24: IETF protocol assignments
        {0xc0000200, 24, 0},  // 192.0.2.0/24: TEST-NET-1
        {0xc0a80000, 16, 0},  // 192.168.0.0/16 (RFC 1918)
        {0xc6120000, 15, 0},  // 198.18.0.0/15: benchmarking
        {0xc6336400, 24, 0},  // 198.51.100.0/24: TEST-NET-2
        {0xcb007100, 24, 0},  // 203.0.113.0/24: TEST-NET-3
    };
    return ranges;
}

const std::vector<std::string>& open_dropped_ipv6_ranges() {
    static const std::vector<std::string> ranges = {
        "::/127",         // unspecified and loopback
        "::ffff:0:0/96",  // IPv4-mapped: the IPv4 ranges again
        "64:ff9b::/96",   // NAT64: the IPv4 ranges again, through a translator
        "fc00::/7",       // unique local (fd00:ec2::254 is AWS's metadata service)
        "fe80::/10",      // link-local
        "ff00::/8",       // multicast
    };
    return ranges;
}

bool overlaps(const AllowRule& a, const AllowRule& b) {
    uint8_t shorter = a.prefix < b.prefix ? a.prefix : b.prefix;
    return (a.network & prefix_mask(shorter)) == (b.network & prefix_mask(shorter));
}

namespace {

// `inner` names nothing `outer` does not: same or longer prefix inside it, and its port if `outer` has one.
bool covers(const AllowRule& outer, const AllowRule& inner) {
    return outer.prefix <= inner.prefix && overlaps(outer, inner) && (outer.port == 0 || outer.port == inner.port);
}

}  // namespace

Status check_tenant_allowlist(const NetworkPolicy& policy, const std::vector<AllowRule>& operator_allow) {
    if (policy.mode != NetworkMode::Allowlist) return ok_status();
    for (const AllowRule& rule : policy.allow) {
        bool is_private = false;
        for (const AllowRule& dropped : open_dropped_ranges()) is_private = is_private || overlaps(rule, dropped);
        if (!is_private) continue;
        bool allowed = false;
        for (const AllowRule& op : operator_allow) allowed = allowed || covers(op, rule);
        if (!allowed)
            return make_error(ErrorCode::Forbidden, "network.allow: " + rule.to_string() +
                                                        " reaches a private or reserved range; only an admin token, or "
                                                        "the operator's network_open_allow, may name one");
    }
    return ok_status();
}

Result<std::vector<AllowRule>> parse_open_allow(std::string_view text) {
    std::vector<AllowRule> rules;
    if (trimmed(text).empty()) return rules;
    size_t start = 0;
    while (start <= text.size()) {
        size_t comma = text.find(',', start);
        std::string entry = trimmed(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
        start = comma == std::string_view::npos ? text.size() + 1 : comma + 1;
        AllowRule rule = TRY(parse_allow_rule(entry));
        for (const AllowRule& dropped : always_dropped_ranges())
            if (overlaps(rule, dropped))
                return make_error(ErrorCode::InvalidArgument,
                                  "network: " + rule.to_string() + " overlaps " + format_ipv4(dropped.network) + "/" +
                                      std::to_string(dropped.prefix) + ", which no sandbox reaches whatever the config says");
        if (rules.size() == kMaxAllowRules)
            return make_error(ErrorCode::InvalidArgument,
                              "network: at most " + std::to_string(kMaxAllowRules) + " entries are accepted");
        bool duplicate = false;
        for (const auto& r : rules) duplicate = duplicate || r == rule;
        if (!duplicate) rules.push_back(rule);
    }
    return rules;
}

}  // namespace kiln::daemon::net
