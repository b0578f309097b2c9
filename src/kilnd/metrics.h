// Metrics: kilnd's counters and histograms, rendered in Prometheus text format for /metrics.
// Thread-safe; recorded by SandboxService (creates, restore failures) and the HTTP layer (execs).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "daemon/fleet/host_registry.h"

namespace kiln::daemon {

// The fleet's gauges, from the hosts table as `self` sees it: per host (live sandboxes, memory in
// use, capacity, heartbeat age, state) and fleet totals (hosts by state, live sandboxes).
std::string render_host_metrics(const std::vector<HostStatus>& hosts, const std::string& self);

class Metrics {
public:
    explicit Metrics(std::string accel);
    void observe_create_ms(double ms);      // kiln_sandbox_create_seconds histogram, and recent_creates
    void count_create_failure();            // kiln_sandbox_create_failures_total
    void count_restore_failure();           // kiln_restore_failures_total
    void observe_exec_ms(double ms);        // kiln_exec_total + kiln_exec_seconds histogram
    void count_http_request(int status);    // kiln_http_requests_total{code}
    // The creates of the last hour (since kilnd started), oldest first, at most kMaxRecentCreates:
    // the dashboard's create-time chart (GET /v1/stats/creates).
    struct Create {
        int64_t at_ms;  // unix ms
        double ms;
    };
    static constexpr size_t kMaxRecentCreates = 10000;
    std::vector<Create> recent_creates(int64_t since_ms) const;
    // Everything, plus kiln_sandboxes{state} from the given counts and kiln_accel_info{accel}.
    std::string render(const std::map<std::string, int64_t>& sandboxes_by_state) const;

private:
    struct Histogram {
        std::vector<double> bounds_seconds;
        std::vector<uint64_t> buckets;  // cumulative is computed at render
        uint64_t count = 0;
        double sum_seconds = 0;
        void observe(double seconds);
    };
    std::string m_accel;
    mutable std::mutex m_mutex;  // guards everything below
    Histogram m_create;
    Histogram m_exec;
    uint64_t m_create_failures = 0;
    uint64_t m_restore_failures = 0;
    std::map<int, uint64_t> m_http_by_status;
    std::deque<Create> m_recent_creates;
};

}  // namespace kiln::daemon
