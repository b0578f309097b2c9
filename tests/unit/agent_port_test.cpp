// Finding the kiln.agent virtio-serial port among /sys/class/virtio-ports entries (on a fake sysfs tree).
#include <sys/stat.h>

#include <fstream>

#include <gtest/gtest.h>

#include "agent/port.h"
#include "agent_test_harness.h"

using kiln::agent::find_agent_port;
using kiln::agent::testing::TempDir;

TEST(AgentPort, FindsThePortNamedKilnAgent) {
    TempDir sysfs;
    for (auto [port, name] : {std::pair{"vport0p0", ""}, {"vport0p1", "org.qemu.guest_agent.0"}, {"vport0p2", "kiln.agent"}}) {
        mkdir((sysfs / port).c_str(), 0755);
        std::ofstream(sysfs / port + "/name") << name << "\n";
    }
    auto found = find_agent_port(sysfs.path(), "/dev");
    ASSERT_TRUE(found.ok()) << found.error().message;
    EXPECT_EQ(*found, "/dev/vport0p2");
}

TEST(AgentPort, NoSuchPortIsAnError) {
    TempDir sysfs;
    mkdir((sysfs / "vport0p1").c_str(), 0755);
    std::ofstream(sysfs / "vport0p1/name") << "kiln.agent2\n";
    EXPECT_FALSE(find_agent_port(sysfs.path(), "/dev").ok());
    EXPECT_FALSE(find_agent_port(sysfs / "missing", "/dev").ok());
}
