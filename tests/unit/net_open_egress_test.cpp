// `open` means the public internet (docs/network.md): which destinations its rules drop, what the
// operator's network_open_allow reopens, and the per-sandbox connection limits in every table.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "daemon/net/egress_options.h"
#include "daemon/net/nft_rules.h"

namespace kiln::daemon::net {
namespace {

SandboxRulesInput input(const char* policy_json, EgressOptions egress = {}) {
    SandboxRulesInput in;
    in.policy = *parse_network_policy_text(policy_json);
    in.pool = *parse_cidr("10.201.0.0/16");
    in.host_addresses = {0xc0000202};  // 192.0.2.2
    in.dns_resolver = 0x0affff35;      // 10.255.255.53: a private resolver, as on many hosts
    in.egress = std::move(egress);
    return in;
}

std::string forward_chain(const std::string& ruleset) {
    size_t from = ruleset.find("chain forward");
    return ruleset.substr(from, ruleset.find("chain egress") - from);
}

// Whether some drop range (always dropped, or dropped by open) holds `address`.
bool dropped_by_open(uint32_t address) {
    AllowRule host{address, 32, 0};
    for (const auto* ranges : {&always_dropped_ranges(), &open_dropped_ranges()})
        for (const AllowRule& range : *ranges)
            if (overlaps(range, host)) return true;
    return false;
}

TEST(OpenEgress, DropsEveryNonPublicAddressAndNoPublicOne) {
    for (const char* text : {"10.0.0.1", "10.255.255.255", "100.64.0.1", "100.100.100.200", "100.127.255.255",
                             "168.63.129.16", "172.16.0.1", "172.31.255.255", "192.168.1.1", "192.0.0.8", "192.0.2.1",
                             "198.18.0.1", "198.19.255.255", "198.51.100.1", "203.0.113.1", "0.1.2.3", "127.0.0.1",
                             "169.254.169.254", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255"})
        EXPECT_TRUE(dropped_by_open(*parse_ipv4(text))) << text;
    for (const char* text : {"1.1.1.1", "8.8.8.8", "9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0",
                             "168.63.129.15", "168.63.129.17", "172.15.255.255", "172.32.0.0", "192.167.255.255",
                             "192.169.0.0", "198.17.255.255", "198.20.0.0", "223.255.255.255"})
        EXPECT_FALSE(dropped_by_open(*parse_ipv4(text))) << text;
}

// nft refuses overlapping intervals in one set, and the operator list is checked against the
// always-dropped ranges with the same function.
TEST(OpenEgress, RangeListsHaveNoOverlapsWithinOrBetweenThem) {
    const auto& open = open_dropped_ranges();
    const auto& always = always_dropped_ranges();
    for (size_t i = 0; i < open.size(); ++i) {
        for (size_t j = i + 1; j < open.size(); ++j) EXPECT_FALSE(overlaps(open[i], open[j])) << open[i].to_string();
        for (const auto& a : always) EXPECT_FALSE(overlaps(open[i], a)) << open[i].to_string();
    }
    EXPECT_TRUE(overlaps(*parse_cidr("100.64.0.0/10"), *parse_cidr("100.100.100.200/32")));
    EXPECT_TRUE(overlaps(*parse_cidr("0.0.0.0/0"), *parse_cidr("10.0.0.0/8")));
    EXPECT_FALSE(overlaps(*parse_cidr("10.0.0.0/8"), *parse_cidr("11.0.0.0/8")));
}

TEST(OpenEgress, RuleOrderResolverThenOperatorListThenDropsThenEverythingElse) {
    EgressOptions egress;
    egress.open_allow = *parse_open_allow("10.20.0.0/16, 192.168.7.9:443");
    std::string r = forward_chain(sandbox_ruleset(input(R"({"mode":"open"})", egress)));
    std::vector<std::string> in_order = {
        "ip daddr { 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/3, 10.201.0.0/16, 192.0.2.2 } drop\n",
        "ct state new limit rate over 100/second burst 200 packets counter drop\n",
        "ct state new ct count over 512 counter drop\n",
        "ct status dnat ip daddr 10.255.255.53 meta l4proto { tcp, udp } th dport 53 accept\n",
        "ip daddr 10.20.0.0/16 accept\n",
        "ip daddr 192.168.7.9 tcp dport 443 accept\n",
        "ip daddr 192.168.7.9 udp dport 443 accept\n",
        "ip daddr { 10.0.0.0/8, 100.64.0.0/10, 168.63.129.16, 172.16.0.0/12, 192.0.0.0/24, 192.0.2.0/24, "
        "192.168.0.0/16, 198.18.0.0/15, 198.51.100.0/24, 203.0.113.0/24 } counter drop\n",
        "ip6 daddr { ::/127, ::ffff:0:0/96, 64:ff9b::/96, fc00::/7, fe80::/10, ff00::/8 } counter drop\n",
        "    accept\n",
    };
    size_t at = 0;
    for (const auto& rule : in_order) {
        size_t found = r.find(rule, at);
        ASSERT_NE(found, std::string::npos) << "missing or out of order: " << rule << "in\n" << r;
        at = found + rule.size();
    }
}

TEST(OpenEgress, OnlyOpenDropsNonPublicRangesAndOnlyItForwardsTheResolverByItself) {
    std::string allowlist = forward_chain(sandbox_ruleset(input(R"({"mode":"allowlist","allow":["10.1.2.3:80"]})")));
    EXPECT_EQ(allowlist.find("100.64.0.0/10"), std::string::npos) << "an allowlist names its destinations itself";
    EXPECT_EQ(allowlist.find("ct status dnat"), std::string::npos) << "DNS in an allowlist only if it lists the resolver";
    EXPECT_NE(allowlist.find("ip daddr 10.1.2.3 tcp dport 80 accept"), std::string::npos);
    SandboxRulesInput no_dns = input(R"({"mode":"open"})");
    no_dns.dns_resolver = 0;
    EXPECT_EQ(sandbox_ruleset(no_dns).find("ct status dnat"), std::string::npos);
}

// Spare networks load their table with mode none and get the policy appended later, so the
// limits must be in every table; 0 turns one off.
TEST(OpenEgress, ConnectionLimitsAreInEveryTableAndConfigurable) {
    for (const char* policy : {R"({"mode":"none"})", R"({"mode":"open"})", R"({"mode":"allowlist","allow":["1.2.3.4"]})"}) {
        std::string r = forward_chain(sandbox_ruleset(input(policy)));
        EXPECT_NE(r.find("ct state new limit rate over 100/second burst 200 packets counter drop"), std::string::npos) << policy;
        EXPECT_NE(r.find("ct state new ct count over 512 counter drop"), std::string::npos) << policy;
    }
    EgressOptions egress;
    egress.max_connections = 3;
    egress.new_connections_per_second = 7;
    egress.new_connection_burst = 9;
    std::string r = sandbox_ruleset(input(R"({"mode":"open"})", egress));
    EXPECT_NE(r.find("ct state new limit rate over 7/second burst 9 packets counter drop"), std::string::npos);
    EXPECT_NE(r.find("ct state new ct count over 3 counter drop"), std::string::npos);
    egress.max_connections = 0;
    egress.new_connections_per_second = 0;
    r = sandbox_ruleset(input(R"({"mode":"open"})", egress));
    EXPECT_EQ(r.find("ct count"), std::string::npos);
    EXPECT_EQ(r.find("limit rate"), std::string::npos);
}

TEST(OpenEgress, OperatorAllowlistParsing) {
    auto ok = parse_open_allow(" 10.0.0.0/8 ,192.168.1.5:443,10.0.0.0/8");
    ASSERT_TRUE(ok.ok()) << ok.error().to_string();
    ASSERT_EQ(ok->size(), 2u) << "duplicates dropped";
    EXPECT_EQ((*ok)[1], (AllowRule{0xc0a80105, 32, 443}));
    EXPECT_TRUE(parse_open_allow("").ok() && parse_open_allow("  ")->empty());
    struct Bad {
        const char* text;
        const char* words;
    };
    for (const Bad& bad : {Bad{"169.254.169.254", "169.254.0.0/16"}, Bad{"0.0.0.0/0", "overlaps"},
                           Bad{"127.0.0.1:80", "127.0.0.0/8"}, Bad{"240.0.0.0/4", "224.0.0.0/3"},
                           Bad{"mirror.internal", "host names"}, Bad{"10.0.0.1/8", "host bits"}, Bad{"10.0.0.0/8,", "empty"},
                           Bad{"10.0.0.1:0", "port"}}) {
        auto r = parse_open_allow(bad.text);
        ASSERT_FALSE(r.ok()) << bad.text;
        EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
        EXPECT_NE(r.error().message.find(bad.words), std::string::npos) << bad.text << ": " << r.error().message;
    }
    std::string many;
    for (int i = 0; i < 65; ++i) many += (many.empty() ? "" : ",") + std::string("10.0.0.") + std::to_string(i);
    EXPECT_FALSE(parse_open_allow(many).ok());
}


// A tenant's allowlist reaches public addresses only, unless the operator's list covers the
// private one it names (an entry straddling a private range counts as private).
TEST(OpenEgress, TenantAllowlistsNamePublicAddressesOnly) {
    auto policy = [](std::vector<std::string> entries) {
        NetworkPolicy p;
        p.mode = NetworkMode::Allowlist;
        for (const auto& e : entries) p.allow.push_back(*parse_allow_rule(e));
        return p;
    };
    std::vector<AllowRule> none;
    EXPECT_TRUE(check_tenant_allowlist(policy({"93.184.216.34:443", "1.1.1.1"}), none).ok());
    for (const char* bad : {"10.0.0.0/8", "10.1.2.3:22", "192.168.1.1", "100.100.100.200", "168.63.129.16:80",
                            "172.16.0.0/12", "0.0.0.0/4"}) {
        auto r = check_tenant_allowlist(policy({"1.1.1.1", bad}), none);
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_EQ(r.error().code, ErrorCode::Forbidden);
        EXPECT_NE(r.error().message.find("network.allow"), std::string::npos) << r.error().message;
    }
    auto op = parse_open_allow("10.20.0.0/16,192.168.1.5:443");
    ASSERT_TRUE(op.ok());
    EXPECT_TRUE(check_tenant_allowlist(policy({"10.20.3.4:80"}), *op).ok());
    EXPECT_TRUE(check_tenant_allowlist(policy({"192.168.1.5:443"}), *op).ok());
    EXPECT_FALSE(check_tenant_allowlist(policy({"192.168.1.5:22"}), *op).ok()) << "the operator allowed port 443 only";
    EXPECT_FALSE(check_tenant_allowlist(policy({"10.0.0.0/8"}), *op).ok()) << "wider than what the operator allowed";
    NetworkPolicy open;
    open.mode = NetworkMode::Open;
    EXPECT_TRUE(check_tenant_allowlist(open, none).ok()) << "open drops private ranges itself";
}

}  // namespace
}  // namespace kiln::daemon::net
