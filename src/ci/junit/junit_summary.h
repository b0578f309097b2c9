// JunitSummary: the counts of a JUnit XML report (tests, failures, errors, skipped), read from hostile bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/result.h"

namespace kiln::ci {

struct JunitSummary {
    std::uint64_t tests = 0;
    std::uint64_t failures = 0;
    std::uint64_t errors = 0;
    std::uint64_t skipped = 0;

    bool passed() const { return failures == 0 && errors == 0; }
    JunitSummary& operator+=(const JunitSummary& other);  // saturating, for several report files
    bool operator==(const JunitSummary&) const = default;
};

struct JunitLimits {
    std::size_t max_bytes = 64 * 1024 * 1024;
    int max_depth = 64;  // nested elements
};

// Reads one report whose root is <testsuites> or <testsuite>. When it has <testcase> elements they
// are counted (each once: error, else failure, else skipped, by its first such child), which
// cannot double count nested suites; a report with none (summary-only) gives the attributes
// tests/failures/errors/skipped (or "disabled") of its outermost element. Refused with
// Error{ErrorCode::InvalidJunit, "line N, column M: …"}: not XML, another root, a DOCTYPE (so no entity
// can expand), a count that is not a whole number, nesting past max_depth, more than max_bytes.
Result<JunitSummary> read_junit_summary(std::string_view xml, const JunitLimits& limits = {});

}  // namespace kiln::ci
