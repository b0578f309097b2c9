// Small helpers every benchmark uses: elapsed time, knobs from the environment, and stopping on
// a failed step with the program's name and the error.
#pragma once

#include <errno.h>  // program_invocation_short_name

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/clock.h"
#include "base/result.h"

namespace kiln::bench {

inline double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// $name as an integer, or `fallback` when unset.
inline int env_int(const char* name, int fallback) {
    const char* v = std::getenv(name);
    return v ? std::atoi(v) : fallback;
}

[[noreturn]] inline void fail(const std::string& what) {
    std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
    std::exit(1);
}

// The value, or exit(1) saying which step failed and why.
template <typename T>
T must(Result<T> r, const char* what) {
    if (!r.ok()) fail(std::string(what) + ": " + r.error().to_string());
    return std::move(r).value();
}

}  // namespace kiln::bench
