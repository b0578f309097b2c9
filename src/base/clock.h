// Monotonic and wall clocks in the units Kiln uses (milliseconds for deadlines, ns for wall time).
#pragma once

#include <chrono>
#include <cstdint>

namespace kiln {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// Milliseconds on the monotonic clock; only differences are meaningful.
inline int64_t monotonic_ms() {
    return std::chrono::duration_cast<Millis>(Clock::now().time_since_epoch()).count();
}

// Nanoseconds since the Unix epoch on the wall clock.
inline int64_t wall_clock_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Milliseconds since the Unix epoch on the wall clock (what records store as *_at_ms).
inline int64_t now_unix_ms() {
    return std::chrono::duration_cast<Millis>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Milliseconds left until `deadline`, clamped to [0, INT32_MAX] for poll().
inline int remaining_ms(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    if (left < 0) return 0;
    if (left > INT32_MAX) return INT32_MAX;
    return static_cast<int>(left);
}

// A deadline `timeout` from now; a zero or negative timeout means "never".
inline Clock::time_point deadline_after(Millis timeout) {
    if (timeout.count() <= 0) return Clock::time_point::max();
    return Clock::now() + timeout;
}

}  // namespace kiln
