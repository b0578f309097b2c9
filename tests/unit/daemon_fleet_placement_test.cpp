// Placement of a new sandbox in a fleet (daemon/fleet/placement.h): a pure function of the hosts.
#include <gtest/gtest.h>

#include "daemon/fleet/placement.h"

using namespace kiln;
using namespace kiln::daemon::fleet;

namespace {

HostLoad host(const std::string& name, int64_t live, int64_t max = 4, int64_t used_mib = -1) {
    HostLoad h;
    h.name = name;
    h.alive = true;
    h.max_sandboxes = max;
    h.max_memory_mib = 4096;
    h.live_sandboxes = live;
    h.used_memory_mib = used_mib >= 0 ? used_mib : live * 256;
    return h;
}

std::string chosen(const std::vector<HostLoad>& hosts, PlacementRequest request = {}) {
    auto got = choose_host(hosts, request);
    return got.ok() ? *got : "error: " + got.error().message;
}

}  // namespace

TEST(FleetPlacement, SpreadsByLiveSandboxesThenFreeMemory) {
    EXPECT_EQ(chosen({host("a", 2), host("b", 1), host("c", 3)}), "b");
    // Equal counts: the one with more free memory.
    EXPECT_EQ(chosen({host("a", 1, 4, 1024), host("b", 1, 4, 256)}), "b");
    // Equal in everything: by name, so every host decides alike.
    EXPECT_EQ(chosen({host("b", 0), host("a", 0)}), "a");
}

TEST(FleetPlacement, SkipsDeadDrainingAndFullHosts) {
    auto dead = host("a", 0);
    dead.alive = false;
    auto draining = host("b", 0);
    draining.draining = true;
    EXPECT_EQ(chosen({dead, draining, host("c", 3)}), "c");
    // Full by count, and full by memory.
    EXPECT_EQ(chosen({host("a", 1, 1), host("b", 2)}), "b");
    EXPECT_EQ(chosen({host("a", 0, 4, 4000), host("b", 3)}, PlacementRequest{256}), "b");
    EXPECT_EQ(chosen({host("a", 0, 4, 3840), host("b", 3)}, PlacementRequest{256}), "a");  // exactly fits
}

TEST(FleetPlacement, PrefersAHostHoldingTheSource) {
    auto holder = host("b", 2);
    holder.holds_source = true;
    EXPECT_EQ(chosen({host("a", 0), holder}), "b");
    // A full holder does not count; the others still do unless the source cannot move.
    auto full_holder = host("b", 4);
    full_holder.holds_source = true;
    EXPECT_EQ(chosen({host("a", 0), full_holder}), "a");
    PlacementRequest pinned;
    pinned.must_hold_source = true;
    EXPECT_EQ(chosen({host("a", 0), holder}, pinned), "b");
    auto refused = choose_host({host("a", 0), full_holder}, pinned);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, ErrorCode::QuotaExceeded);
}

TEST(FleetPlacement, SaysWhyNoHostWillDo) {
    auto none = choose_host({}, {});
    ASSERT_FALSE(none.ok());
    EXPECT_EQ(none.error().code, ErrorCode::Unavailable);
    auto dead = host("a", 0);
    dead.alive = false;
    auto all_dead = choose_host({dead}, {});
    ASSERT_FALSE(all_dead.ok());
    EXPECT_EQ(all_dead.error().code, ErrorCode::Unavailable);
    EXPECT_NE(all_dead.error().message.find("alive"), std::string::npos);
    auto full = choose_host({host("a", 1, 1), host("b", 1, 1)}, {});
    ASSERT_FALSE(full.ok());
    EXPECT_EQ(full.error().code, ErrorCode::QuotaExceeded);
    EXPECT_NE(full.error().message.find("no host has room"), std::string::npos);
}
