// Parsing helpers of the agent's identity renewal.
#include <gtest/gtest.h>

#include "agent/identity.h"

using namespace kiln::agent;

TEST(AgentIdentity, ParsesTheArpTable) {
    const char* table =
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "10.0.2.2         0x1         0x2         52:55:0a:00:02:02     *        eth0\n"
        "192.168.1.17     0x1         0x0         00:00:00:00:00:00     *        br-kiln\n"
        "broken line\n";
    auto entries = parse_arp_table(table);
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[0].ip, "10.0.2.2");
    EXPECT_EQ(entries[0].device, "eth0");
    EXPECT_EQ(entries[1].ip, "192.168.1.17");
    EXPECT_EQ(entries[1].device, "br-kiln");
    EXPECT_TRUE(parse_arp_table("IP address       HW type     Flags       HW address            Mask     Device\n").empty());
    EXPECT_TRUE(parse_arp_table("").empty());
}

TEST(AgentIdentity, DecodesHex) {
    EXPECT_EQ(decode_hex("00ff7A"), std::string("\x00\xff\x7a", 3));
    EXPECT_EQ(decode_hex(""), "");
}
