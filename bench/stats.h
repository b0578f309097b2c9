// Sample statistics for benchmarks: median and p99 over many runs, printed the same way everywhere.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace kiln::bench {

struct Summary {
    size_t runs = 0;
    double p50 = 0;
    double p99 = 0;
    double min = 0;
    double max = 0;
};

inline double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    // Nearest-rank: the smallest value with at least p of the samples at or below it.
    size_t rank = static_cast<size_t>(p * static_cast<double>(v.size()) + 0.999999);
    rank = std::clamp<size_t>(rank, 1, v.size());
    return v[rank - 1];
}

inline Summary summarize(const std::vector<double>& v) {
    Summary s;
    s.runs = v.size();
    if (v.empty()) return s;
    s.p50 = percentile(v, 0.5);
    s.p99 = percentile(v, 0.99);
    s.min = *std::min_element(v.begin(), v.end());
    s.max = *std::max_element(v.begin(), v.end());
    return s;
}

inline void print_row(const std::string& name, const Summary& s, const char* unit, const std::string& accel,
                      const std::string& note = "") {
    std::printf("%-44s p50 %9.2f %-5s p99 %9.2f %-5s (n=%zu, min %.2f, max %.2f, accel=%s)%s%s\n", name.c_str(), s.p50,
                unit, s.p99, unit, s.runs, s.min, s.max, accel.c_str(), note.empty() ? "" : "  ", note.c_str());
    std::fflush(stdout);
}

}  // namespace kiln::bench
