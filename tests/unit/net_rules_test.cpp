// The generated nftables rulesets and the address pool: structure checked here, behaviour in tests/functional.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "daemon/net/address_pool.h"
#include "daemon/net/egress_options.h"
#include "daemon/net/nft_rules.h"
#include "daemon/net/sandbox_network.h"

namespace kiln::daemon::net {
namespace {

SandboxRulesInput input(NetworkPolicy policy) {
    SandboxRulesInput in;
    in.policy = std::move(policy);
    in.pool = *parse_cidr("10.201.0.0/16");
    in.host_addresses = {0xc0000202, 0x7f000001, 0x0ac90001, 0xc0000202};  // 192.0.2.2 twice, loopback, a pool address
    in.dns_resolver = 0x0affff35;
    return in;
}

// The context input() gives its rules: the default egress options, its resolver.
PolicyContext context() {
    static const EgressOptions defaults;
    return PolicyContext{defaults, 0x0affff35};
}

size_t count(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

TEST(NetRules, FixedDropsComeBeforeThePolicy) {
    std::string r = sandbox_ruleset(input(*parse_network_policy_text(R"({"mode":"open"})")));
    size_t drops = r.find("ip daddr { 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/3, 10.201.0.0/16, 192.0.2.2 } drop");
    ASSERT_NE(drops, std::string::npos) << r;
    EXPECT_LT(drops, r.find("    accept\n"));
    EXPECT_EQ(count(r, "192.0.2.2"), 1u) << "host addresses deduplicated";
    EXPECT_NE(r.find("iifname \"tap0\" ip saddr != 172.30.0.2 drop"), std::string::npos);
    EXPECT_NE(r.find("iifname \"tap0\" meta nfproto ipv6 drop"), std::string::npos);
    EXPECT_NE(r.find("dnat ip to 10.255.255.53:53"), std::string::npos);
    EXPECT_NE(r.find("oifname \"veth0\" masquerade"), std::string::npos);
    EXPECT_NE(r.find("chain forward {\n    type filter hook forward priority filter; policy drop;"), std::string::npos);
}

TEST(NetRules, NoneAcceptsNothingNew) {
    std::string r = sandbox_ruleset(input(*parse_network_policy_text(R"({"mode":"none"})")));
    std::string forward = r.substr(r.find("chain forward"), r.find("chain egress") - r.find("chain forward"));
    EXPECT_EQ(count(forward, "accept"), 1u) << forward;  // established,related only
}

TEST(NetRules, AllowlistPortsOpenTcpAndUdp) {
    std::string r = sandbox_ruleset(
        input(*parse_network_policy_text(R"({"mode":"allowlist","allow":["10.0.0.0/8","192.0.2.9:9418"]})")));
    EXPECT_NE(r.find("ip daddr 10.0.0.0/8 accept"), std::string::npos);
    EXPECT_NE(r.find("ip daddr 192.0.2.9 tcp dport 9418 accept"), std::string::npos);
    EXPECT_NE(r.find("ip daddr 192.0.2.9 udp dport 9418 accept"), std::string::npos);
}

// A spare's table is loaded with policy none; assigning it to a sandbox appends that sandbox's
// accepts, and drops of host addresses new since, with additions only (no delete or flush, whose
// transaction waits for an RCU grace period). Appended, they land where sandbox_ruleset puts them.
TEST(NetRules, PolicyAdditionsTurnAPolicyNoneTableIntoThePolicysOne) {
    auto allow = *parse_network_policy_text(R"({"mode":"allowlist","allow":["192.0.2.7:443","198.51.100.0/24"]})");
    std::string add = sandbox_policy_additions(allow, context(), {});
    EXPECT_EQ(add,
              "add rule inet kiln forward ip daddr 192.0.2.7 tcp dport 443 accept\n"
              "add rule inet kiln forward ip daddr 192.0.2.7 udp dport 443 accept\n"
              "add rule inet kiln forward ip daddr 198.51.100.0/24 accept\n");
    for (const auto& rule : policy_rules(allow, context()))
        EXPECT_NE(sandbox_ruleset(input(allow)).find("    " + rule + "\n"), std::string::npos) << rule;
    EXPECT_EQ(sandbox_policy_additions(NetworkPolicy{}, context(), {}), "") << "mode none adds nothing";
    auto open = *parse_network_policy_text(R"({"mode":"open"})");
    std::string open_add = sandbox_policy_additions(open, context(), {0xc6336407, 0xc6336407});
    EXPECT_EQ(open_add.rfind("add rule inet kiln forward ip daddr { 198.51.100.7 } drop\n", 0), 0u) << open_add;
    EXPECT_EQ(count(open_add, "add rule inet kiln forward "), 1 + policy_rules(open, context()).size());
    for (const auto& rule : policy_rules(open, context()))
        EXPECT_NE(sandbox_ruleset(input(open)).find("    " + rule + "\n"), std::string::npos) << rule;
    for (const char* word : {"delete", "flush", "replace", "insert"}) EXPECT_EQ(add.find(word), std::string::npos) << word;
}

TEST(NetRules, HostTableDropsSandboxInputAndCrossTraffic) {
    std::string r = host_ruleset(*parse_cidr("10.201.0.0/16"));
    EXPECT_NE(r.find("iifname \"kv-*\" drop"), std::string::npos);
    EXPECT_NE(r.find("iifname \"kv-*\" oifname \"kv-*\" drop"), std::string::npos);
    EXPECT_NE(r.find("ip saddr 10.201.0.0/16 oifname != \"kv-*\" masquerade"), std::string::npos);
    EXPECT_EQ(r.rfind("table ip kiln\ndelete table ip kiln\n", 0), 0u) << "replaced atomically";
}

TEST(NetPool, HandsOutDistinctSlotsRoundRobin) {
    auto pool = AddressPool::create("10.201.0.0/28");
    ASSERT_TRUE(pool.ok());
    auto none = [](uint32_t) { return false; };
    auto a = (*pool)->allocate(none), b = (*pool)->allocate(none);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(format_ipv4(a->host_address()), "10.201.0.1");
    EXPECT_EQ(format_ipv4(a->netns_address()), "10.201.0.2");
    EXPECT_EQ(format_ipv4(b->host_address()), "10.201.0.5");
    (*pool)->release(a->slot);
    auto c = (*pool)->allocate([](uint32_t addr) { return addr == 0x0ac90009; });  // 10.201.0.9 still on an interface
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(format_ipv4(c->host_address()), "10.201.0.13");
    auto d = (*pool)->allocate(none);  // wraps round to the released slot
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->slot, a->slot);
    auto e = (*pool)->allocate(none);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(format_ipv4(e->host_address()), "10.201.0.9");
    auto full = (*pool)->allocate(none);
    ASSERT_FALSE(full.ok());
    EXPECT_EQ(full.error().code, ErrorCode::ResourceExhausted);
    EXPECT_EQ((*pool)->slot_of(0x0ac9000e), 3u);
    EXPECT_FALSE((*pool)->slot_of(0x0ac90010).has_value());
}

TEST(NetPool, RefusesBadRanges) {
    for (const char* bad : {"10.201.0.0/29", "10.0.0.0/7", "10.201.0.1/16", "nope"}) EXPECT_FALSE(AddressPool::create(bad).ok()) << bad;
}

TEST(NetNames, FitInterfaceNamesAndRefuseOddIds) {
    std::string veth = NetworkManager::host_veth_name("sb-0123456789ab");
    EXPECT_EQ(veth.size(), 15u);
    EXPECT_EQ(veth.rfind("kv-", 0), 0u);
    EXPECT_NE(veth, NetworkManager::host_veth_name("sb-0123456789ac"));
    EXPECT_EQ(NetworkManager::netns_name("sb-1"), "kiln-sb-1");
    // std::string elements: a .c_str() of a temporary in the list would dangle once the list is built.
    for (const std::string& bad : std::vector<std::string>{"", "../x", "a b", "A", "x;rm", std::string(49, 'a')})
        EXPECT_FALSE(NetworkManager::validate_id(bad).ok()) << bad;
}

}  // namespace
}  // namespace kiln::daemon::net
