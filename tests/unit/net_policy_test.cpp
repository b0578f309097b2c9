// NetworkPolicy parsing: the accepted forms, and every hostile input refused with a clear message.
#include <gtest/gtest.h>

#include "daemon/net/network_policy.h"

namespace kiln::daemon::net {
namespace {

NetworkPolicy parse_ok(const std::string& text) {
    auto p = parse_network_policy_text(text);
    EXPECT_TRUE(p.ok()) << text << ": " << (p.ok() ? "" : p.error().to_string());
    return p.ok() ? *p : NetworkPolicy{};
}

std::string parse_error(const std::string& text) {
    auto p = parse_network_policy_text(text);
    EXPECT_FALSE(p.ok()) << text << " was accepted";
    if (p.ok()) return "";
    EXPECT_EQ(p.error().code, ErrorCode::InvalidArgument);
    return p.error().message;
}

TEST(NetPolicy, Modes) {
    EXPECT_EQ(parse_ok(R"({"mode":"none"})").mode, NetworkMode::None);
    EXPECT_EQ(parse_ok(R"({"mode":"open"})").mode, NetworkMode::Open);
    auto p = parse_ok(R"({"mode":"allowlist","allow":["10.0.0.0/8","192.0.2.7:443","198.51.100.0/24:53","1.2.3.4"]})");
    ASSERT_EQ(p.mode, NetworkMode::Allowlist);
    ASSERT_EQ(p.allow.size(), 4u);
    EXPECT_EQ(p.allow[0], (AllowRule{0x0a000000, 8, 0}));
    EXPECT_EQ(p.allow[1], (AllowRule{0xc0000207, 32, 443}));
    EXPECT_EQ(p.allow[2], (AllowRule{0xc6336400, 24, 53}));
    EXPECT_EQ(p.allow[3].to_string(), "1.2.3.4");
    EXPECT_EQ(to_json(p).dump(), R"({"allow":["10.0.0.0/8","192.0.2.7:443","198.51.100.0/24:53","1.2.3.4"],"mode":"allowlist"})");
}

TEST(NetPolicy, AllowsMatchesPrefixAndPort) {
    auto p = parse_ok(R"({"mode":"allowlist","allow":["10.1.0.0/16","192.0.2.7:443"]})");
    EXPECT_TRUE(p.allows(0x0a01ffff, 1));
    EXPECT_FALSE(p.allows(0x0a020000, 1));
    EXPECT_TRUE(p.allows(0xc0000207, 443));
    EXPECT_FALSE(p.allows(0xc0000207, 80));
    EXPECT_FALSE(parse_ok(R"({"mode":"none"})").allows(0x01010101, 53));
    EXPECT_TRUE(parse_ok(R"({"mode":"open"})").allows(0x01010101, 53));
    EXPECT_TRUE(parse_ok(R"({"mode":"allowlist","allow":["0.0.0.0/0"]})").allows(0x01010101, 53));
}

TEST(NetPolicy, DuplicatesCollapse) {
    EXPECT_EQ(parse_ok(R"({"mode":"allowlist","allow":["1.2.3.4","1.2.3.4/32"]})").allow.size(), 1u);
}

TEST(NetPolicy, RefusesHostileInput) {
    EXPECT_NE(parse_error("not json").find("not valid JSON"), std::string::npos);
    EXPECT_NE(parse_error("[]").find("must be an object"), std::string::npos);
    EXPECT_NE(parse_error("{}").find("mode is required"), std::string::npos);
    EXPECT_NE(parse_error(R"({"mode":"everything"})").find("not one of"), std::string::npos);
    EXPECT_NE(parse_error(R"({"mode":1})").find("must be a string"), std::string::npos);
    EXPECT_NE(parse_error(R"({"mode":"open","allow":[]})").find("only meaningful with mode allowlist"), std::string::npos);
    EXPECT_NE(parse_error(R"({"mode":"allowlist","allow":"1.2.3.4"})").find("array"), std::string::npos);
    EXPECT_NE(parse_error(R"({"mode":"allowlist","allow":[5]})").find("array of strings"), std::string::npos);
    EXPECT_NE(parse_error(R"({"mode":"allowlist","extra":1})").find("unknown field"), std::string::npos);
    EXPECT_NE(parse_error(R"({"mode":"allowlist","allow":["github.com:443"]})").find("host names are not supported"),
              std::string::npos);
    EXPECT_NE(parse_error(R"({"mode":"allowlist","allow":["10.0.0.1/8"]})").find("did you mean 10.0.0.0/8"),
              std::string::npos);
    std::string many = R"({"mode":"allowlist","allow":[)";
    for (int i = 0; i < 65; ++i) many += std::string(i ? "," : "") + "\"10.0.0." + std::to_string(i) + "\"";
    EXPECT_NE(parse_error(many + "]}").find("at most 64"), std::string::npos);
}

TEST(NetPolicy, RefusesBadAddresses) {
    for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4/33", "1.2.3.4/", "1.2.3.4:0",
                            "1.2.3.4:65536", "1.2.3.4:", ":80", "1.2.3.4:80:80", "1..3.4", "-1.2.3.4", "1.2.3.4/08",
                            "1.2.3.4 ", "1.2.3.4/32/32", "0x7f.0.0.1", "1.2.3.4:+80"}) {
        auto r = parse_allow_rule(bad);
        EXPECT_FALSE(r.ok()) << "'" << bad << "' was accepted";
        if (!r.ok()) {
            EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
        }
    }
    auto long_rule = parse_allow_rule(std::string(100, '1'));
    ASSERT_FALSE(long_rule.ok());
    EXPECT_NE(long_rule.error().message.find("longer than"), std::string::npos);
}

TEST(NetPolicy, ErrorMessagesAreSafeToEcho) {
    auto r = parse_allow_rule(std::string("1.2.3.4\x01\xff", 9));
    ASSERT_FALSE(r.ok());
    for (char c : r.error().message) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << int(c);
}

}  // namespace
}  // namespace kiln::daemon::net
