// Small helpers every benchmark uses: elapsed time, knobs from the environment, and stopping on
// a failed step with the program's name and the error.
#pragma once

#include <errno.h>  // program_invocation_short_name
#include <sys/types.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
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

// Proportional set size of one process, in MiB, from /proc/PID/smaps_rollup (0 if it is gone).
inline double pss_mib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
    std::string key;
    double kib = 0;
    while (in >> key) {
        if (key == "Pss:") {
            in >> kib;
            return kib / 1024.0;
        }
        in.ignore(1 << 20, '\n');
    }
    return 0;
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
