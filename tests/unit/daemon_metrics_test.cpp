// Metrics::render(): Prometheus text format 0.0.4, checked line by line as a scraper would parse it.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "kilnd/metrics.h"

using namespace kiln::daemon;

namespace {

// "name{labels} value" lines by their series (name plus labels), and the TYPE of each family.
struct Parsed {
    std::map<std::string, double> samples;
    std::map<std::string, std::string> types;
    std::map<std::string, std::string> help;
    std::vector<std::string> bad_lines;
};

Parsed parse(const std::string& text) {
    Parsed p;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        if (line.rfind("# TYPE ", 0) == 0) {
            std::istringstream l(line.substr(7));
            std::string name, type;
            l >> name >> type;
            p.types[name] = type;
        } else if (line.rfind("# HELP ", 0) == 0) {
            std::string rest = line.substr(7);
            p.help[rest.substr(0, rest.find(' '))] = rest.substr(rest.find(' ') + 1);
        } else if (line[0] == '#') {
            p.bad_lines.push_back(line);
        } else {
            size_t space = line.rfind(' ');
            if (space == std::string::npos) {
                p.bad_lines.push_back(line);
                continue;
            }
            try {
                p.samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
            } catch (...) {
                p.bad_lines.push_back(line);
            }
        }
    }
    return p;
}

}  // namespace

TEST(DaemonMetrics, EmptyRenderHasEveryFamily) {
    Metrics m("tcg");
    Parsed p = parse(m.render({{"creating", 0}, {"running", 2}, {"deleted", 5}}));
    EXPECT_TRUE(p.bad_lines.empty()) << p.bad_lines.front();
    EXPECT_EQ(p.samples["kiln_accel_info{accel=\"tcg\"}"], 1);
    EXPECT_EQ(p.samples["kiln_sandboxes{state=\"running\"}"], 2);
    EXPECT_EQ(p.samples["kiln_sandboxes{state=\"deleted\"}"], 5);
    EXPECT_EQ(p.samples.count("kiln_sandboxes{state=\"creating\"}"), 1u);  // zero counts are shown
    EXPECT_EQ(p.types["kiln_sandbox_create_seconds"], "histogram");
    EXPECT_EQ(p.types["kiln_exec_seconds"], "histogram");
    EXPECT_EQ(p.types["kiln_exec_total"], "counter");
    EXPECT_EQ(p.types["kiln_restore_failures_total"], "counter");
    EXPECT_EQ(p.types["kiln_sandboxes"], "gauge");
    EXPECT_EQ(p.samples["kiln_sandbox_create_seconds_count"], 0);
    EXPECT_EQ(p.samples["kiln_sandbox_create_seconds_bucket{le=\"+Inf\"}"], 0);
    EXPECT_EQ(p.samples["kiln_restore_failures_total"], 0);
    // Every TYPE has a HELP.
    for (const auto& [name, type] : p.types) EXPECT_TRUE(p.help.count(name)) << name;
}

TEST(DaemonMetrics, HistogramsAreCumulative) {
    Metrics m("kvm");
    m.observe_create_ms(40);     // 0.04 s
    m.observe_create_ms(60);     // 0.06 s
    m.observe_create_ms(100);    // exactly on a bound or not, counted in every bucket >= 0.1
    m.observe_create_ms(90000);  // beyond every bound: only +Inf
    Parsed p = parse(m.render({}));
    EXPECT_TRUE(p.bad_lines.empty());
    EXPECT_EQ(p.samples["kiln_sandbox_create_seconds_count"], 4);
    EXPECT_NEAR(p.samples["kiln_sandbox_create_seconds_sum"], 90.2, 1e-6);
    EXPECT_EQ(p.samples["kiln_sandbox_create_seconds_bucket{le=\"+Inf\"}"], 4);

    // Buckets: le values ascending and counts never decreasing; each value lands in every bucket
    // whose bound is >= it.
    std::vector<std::pair<double, double>> buckets;  // (le, count)
    for (const auto& [series, value] : p.samples) {
        const std::string prefix = "kiln_sandbox_create_seconds_bucket{le=\"";
        if (series.rfind(prefix, 0) != 0 || series.find("+Inf") != std::string::npos) continue;
        buckets.emplace_back(std::stod(series.substr(prefix.size())), value);
    }
    ASSERT_GE(buckets.size(), 3u);
    std::sort(buckets.begin(), buckets.end());
    double previous = 0;
    for (const auto& [le, count] : buckets) {
        EXPECT_GE(count, previous) << "le=" << le;
        previous = count;
        double expected = (0.04 <= le) + (0.06 <= le) + (0.1 <= le) + (90.0 <= le);
        EXPECT_EQ(count, expected) << "le=" << le;
    }
}

TEST(DaemonMetrics, CountersAndExecs) {
    Metrics m("tcg");
    m.count_create_failure();
    m.count_restore_failure();
    m.count_restore_failure();
    m.observe_exec_ms(3);
    m.observe_exec_ms(2000);
    m.count_http_request(200);
    m.count_http_request(200);
    m.count_http_request(404);
    Parsed p = parse(m.render({}));
    EXPECT_EQ(p.samples["kiln_sandbox_create_failures_total"], 1);
    EXPECT_EQ(p.samples["kiln_restore_failures_total"], 2);
    EXPECT_EQ(p.samples["kiln_exec_total"], 2);
    EXPECT_EQ(p.samples["kiln_exec_seconds_count"], 2);
    EXPECT_NEAR(p.samples["kiln_exec_seconds_sum"], 2.003, 1e-9);
    EXPECT_EQ(p.samples["kiln_http_requests_total{code=\"200\"}"], 2);
    EXPECT_EQ(p.samples["kiln_http_requests_total{code=\"404\"}"], 1);
}

TEST(DaemonMetrics, ThreadSafe) {
    Metrics m("tcg");
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&m] {
            for (int i = 0; i < 1000; ++i) {
                m.observe_exec_ms(i % 50);
                if (i % 100 == 0) (void)m.render({});
            }
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(parse(m.render({})).samples["kiln_exec_total"], 4000);
}

TEST(Metrics, RecentCreatesAreTheLastHoursBounded) {
    kiln::daemon::Metrics m("tcg");
    const int64_t before = kiln::now_unix_ms();
    for (size_t i = 0; i < kiln::daemon::Metrics::kMaxRecentCreates + 5; ++i) m.observe_create_ms(double(i));
    auto all = m.recent_creates(0);
    ASSERT_EQ(all.size(), kiln::daemon::Metrics::kMaxRecentCreates) << "the oldest beyond the cap are dropped";
    EXPECT_EQ(all.front().ms, 5.0);
    EXPECT_GE(all.back().at_ms, before);
    EXPECT_TRUE(m.recent_creates(kiln::now_unix_ms() + 1000).empty()) << "since a time after them: none";
}
