// A sandbox's TTL deadline is on the monotonic clock: a wall clock that jumps forward does not
// expire it early, one that jumps back does not keep it past its TTL. The reaper decides by
// TtlClock::until (LocalSandboxService::reap_once); here its clocks are fakes that jump.
#include <gtest/gtest.h>

#include "daemon/sandboxes/ttl_clock.h"

using namespace kiln::daemon;

namespace {

struct FakeClocks {
    int64_t wall = 1'700'000'000'000;  // unix ms
    int64_t mono = 5'000;
    TtlClock clock() {
        TtlClock c;
        c.wall_ms = [this] { return wall; };
        c.monotonic_ms = [this] { return mono; };
        return c;
    }
    void elapse(int64_t ms) { wall += ms, mono += ms; }
};

constexpr int64_t kDayMs = 86400 * 1000;

}  // namespace

TEST(TtlClock, AWallClockJumpForwardExpiresNothingEarly) {
    FakeClocks t;
    TtlClock clock = t.clock();
    const int64_t expires_at = t.wall + 600'000;  // a 10-minute TTL, as create computes it
    const int64_t deadline = clock.deadline_of(expires_at);
    t.elapse(1000);
    t.wall += kDayMs;  // NTP steps the clock a day ahead: the wall says it is long past expires_at
    EXPECT_GT(clock.until(deadline), 0) << "expired by a wall clock jump";
    EXPECT_EQ(clock.until(deadline), 599'000);
    t.elapse(599'000);
    EXPECT_LE(clock.until(deadline), 0) << "not expired once its 10 minutes ran";
}

TEST(TtlClock, AWallClockJumpBackKeepsNothingPastItsTtl) {
    FakeClocks t;
    TtlClock clock = t.clock();
    const int64_t deadline = clock.deadline_of(t.wall + 2000);
    t.wall -= kDayMs;  // the wall says expires_at is a day away
    t.elapse(1999);
    EXPECT_EQ(clock.until(deadline), 1);
    t.elapse(1);
    EXPECT_LE(clock.until(deadline), 0) << "kept past its TTL by a wall clock jump back";
}

TEST(TtlClock, AnExtensionIsConvertedWhenItIsSet) {
    FakeClocks t;
    TtlClock clock = t.clock();
    t.wall += 3 * kDayMs;  // jumped before the PATCH: set_ttl's expires_at is on the new wall time
    const int64_t deadline = clock.deadline_of(t.wall + 60'000);
    EXPECT_EQ(clock.until(deadline), 60'000);
}

TEST(TtlClock, TheRealClocksAgree) {
    TtlClock clock;
    const int64_t deadline = clock.deadline_of(kiln::now_unix_ms() + 5000);
    EXPECT_GT(clock.until(deadline), 4000);
    EXPECT_LE(clock.until(deadline), 5000);
}
