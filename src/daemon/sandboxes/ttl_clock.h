// The clocks a sandbox's TTL is kept on. Its expires_at (what the API shows and the store keeps)
// is wall-clock time; the reaper's deadline is on the monotonic clock, converted from it once
// when the TTL is set. So a wall clock that jumps while kilnd runs (an NTP step, a host resumed
// from suspend, an operator's `date -s`) neither expires every sandbox at once when it jumps
// forward nor keeps them past their TTL when it jumps back. No VM outlives kilnd (the reconcile
// kills them), so nothing needs the monotonic deadline across a restart.
#pragma once

#include <cstdint>
#include <functional>

#include "base/clock.h"

namespace kiln::daemon {

struct TtlClock {
    std::function<int64_t()> wall_ms = now_unix_ms;           // unix ms: created_at, expires_at
    std::function<int64_t()> monotonic_ms = kiln::monotonic_ms;  // the reaper's deadlines

    // The monotonic deadline of a TTL that ends at wall-clock `expires_at_ms`, as both clocks read now.
    int64_t deadline_of(int64_t expires_at_ms) const { return monotonic_ms() + (expires_at_ms - wall_ms()); }
    // Milliseconds until a monotonic deadline (negative once it has passed).
    int64_t until(int64_t deadline_ms) const { return deadline_ms - monotonic_ms(); }
};

}  // namespace kiln::daemon
