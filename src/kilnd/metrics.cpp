// Prometheus text exposition (format 0.0.4) of kilnd's metrics.
#include "kilnd/metrics.h"

#include <cstdio>

#include "base/clock.h"
#include "vm/jail/jail_settings.h"

namespace kiln::daemon {

namespace {
// Seconds: restores are tens of ms here, cold bakes seconds; execs from ms to minutes.
const std::vector<double> kCreateBounds = {0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30};
constexpr int64_t kHourMs = 3600 * 1000;
const std::vector<double> kExecBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 300};

std::string number(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

void render_histogram(std::string& out, const char* name, const char* help, const std::vector<double>& bounds,
                      const std::vector<uint64_t>& buckets, uint64_t count, double sum) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " histogram\n";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds.size(); ++i) {
        cumulative += buckets[i];
        out += std::string(name) + "_bucket{le=\"" + number(bounds[i]) + "\"} " + std::to_string(cumulative) + "\n";
    }
    out += std::string(name) + "_bucket{le=\"+Inf\"} " + std::to_string(count) + "\n";
    out += std::string(name) + "_sum " + number(sum) + "\n";
    out += std::string(name) + "_count " + std::to_string(count) + "\n";
}

void render_counter(std::string& out, const char* name, const char* help, uint64_t value) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " +
           std::to_string(value) + "\n";
}
// A label value as Prometheus reads it (host names are checked words, but rows come from other hosts).
std::string label(const std::string& v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

void render_gauge_header(std::string& out, const char* name, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n";
}
}  // namespace

std::string render_host_metrics(const std::vector<HostStatus>& hosts, const std::string& self) {
    std::string out;
    std::map<std::string, int64_t> by_state = {{"alive", 0}, {"draining", 0}, {"dead", 0}};
    int64_t fleet_live = 0;
    for (const auto& h : hosts) {
        by_state[host_state_name(h.state)]++;
        fleet_live += h.record.live_sandboxes;
    }
    render_gauge_header(out, "kiln_fleet_hosts", "Hosts of the fleet by state (alive, draining, dead).");
    for (const auto& [state, n] : by_state) out += "kiln_fleet_hosts{state=\"" + state + "\"} " + std::to_string(n) + "\n";
    render_gauge_header(out, "kiln_fleet_live_sandboxes", "Creating and running sandboxes on every host.");
    out += "kiln_fleet_live_sandboxes " + std::to_string(fleet_live) + "\n";
    struct Gauge {
        const char* name;
        const char* help;
        double (*value)(const HostStatus&);
    };
    static const Gauge gauges[] = {
        {"kiln_host_up", "1 for each host with its state (alive, draining, dead) as a label; self marks this kilnd.",
         [](const HostStatus&) { return 1.0; }},
        {"kiln_host_live_sandboxes", "Creating and running sandboxes on the host.",
         [](const HostStatus& h) { return double(h.record.live_sandboxes); }},
        {"kiln_host_memory_in_use_mib", "Guest memory of the host's live sandboxes, MiB.",
         [](const HostStatus& h) { return double(h.record.memory_mib_in_use); }},
        {"kiln_host_max_sandboxes", "The host's max_sandboxes.", [](const HostStatus& h) { return double(h.record.spec.max_sandboxes); }},
        {"kiln_host_max_memory_mib", "The host's max_memory_mib.", [](const HostStatus& h) { return double(h.record.spec.max_memory_mib); }},
        {"kiln_host_heartbeat_age_seconds", "Seconds since the host's last heartbeat, on this host's clock.",
         [](const HostStatus& h) { return double(h.heartbeat_age_ms) / 1000.0; }},
    };
    for (const auto& g : gauges) {
        render_gauge_header(out, g.name, g.help);
        for (const auto& h : hosts) {
            std::string labels = "host=\"" + label(h.record.spec.name) + "\"";
            if (&g == &gauges[0])
                labels += std::string(",state=\"") + host_state_name(h.state) + "\",self=\"" +
                          (h.record.spec.name == self ? "true" : "false") + "\"";
            out += std::string(g.name) + "{" + labels + "} " + number(g.value(h)) + "\n";
        }
    }
    return out;
}

void Metrics::Histogram::observe(double seconds) {
    size_t i = 0;
    while (i < bounds_seconds.size() && seconds > bounds_seconds[i]) ++i;
    if (i < buckets.size()) ++buckets[i];
    ++count;
    sum_seconds += seconds;
}

Metrics::Metrics(std::string accel) : m_accel(std::move(accel)) {
    m_create.bounds_seconds = kCreateBounds;
    m_create.buckets.assign(kCreateBounds.size(), 0);
    m_exec.bounds_seconds = kExecBounds;
    m_exec.buckets.assign(kExecBounds.size(), 0);
}

void Metrics::observe_create_ms(double ms) {
    const int64_t now = now_unix_ms();
    std::lock_guard lock(m_mutex);
    m_create.observe(ms / 1000.0);
    m_recent_creates.push_back(Create{now, ms});
    while (!m_recent_creates.empty() &&
           (m_recent_creates.size() > kMaxRecentCreates || m_recent_creates.front().at_ms < now - kHourMs))
        m_recent_creates.pop_front();
}

std::vector<Metrics::Create> Metrics::recent_creates(int64_t since_ms) const {
    std::lock_guard lock(m_mutex);
    std::vector<Create> out;
    for (const auto& c : m_recent_creates)
        if (c.at_ms >= since_ms) out.push_back(c);
    return out;
}

void Metrics::count_create_failure() {
    std::lock_guard lock(m_mutex);
    ++m_create_failures;
}

void Metrics::count_restore_failure() {
    std::lock_guard lock(m_mutex);
    ++m_restore_failures;
}

void Metrics::observe_exec_ms(double ms) {
    std::lock_guard lock(m_mutex);
    m_exec.observe(ms / 1000.0);
}

void Metrics::count_http_request(int status) {
    std::lock_guard lock(m_mutex);
    ++m_http_by_status[status];
}

std::string Metrics::render(const std::map<std::string, int64_t>& sandboxes_by_state) const {
    std::lock_guard lock(m_mutex);
    std::string out;
    out += "# HELP kiln_accel_info The accelerator guests run with (kvm or tcg).\n# TYPE kiln_accel_info gauge\n";
    out += "kiln_accel_info{accel=\"" + m_accel + "\"} 1\n";
    // On every scrape: a host whose VMs run unconfined must stay visible, not be logged once.
    auto confinement = vm::jail::confinement();
    out += "# HELP kiln_vm_confinement How VMs are confined: jailed (own uid, namespaces, cgroup) and under seccomp "
           "(1 yes, 0 no); allowed says whether VMs may start.\n# TYPE kiln_vm_confinement gauge\n";
    out += "kiln_vm_confinement{part=\"jailed\"} " + std::to_string(confinement.jailed ? 1 : 0) + "\n";
    out += "kiln_vm_confinement{part=\"seccomp\"} " + std::to_string(confinement.seccomp ? 1 : 0) + "\n";
    out += "kiln_vm_confinement{part=\"allowed\"} " + std::to_string(confinement.allowed ? 1 : 0) + "\n";
    out += "kiln_vm_confinement{part=\"unconfined\"} " +
           std::to_string(confinement.allowed && !confinement.problem.empty() ? 1 : 0) + "\n";
    out += "# HELP kiln_sandboxes Sandboxes by state.\n# TYPE kiln_sandboxes gauge\n";
    for (const auto& [state, n] : sandboxes_by_state)
        out += "kiln_sandboxes{state=\"" + state + "\"} " + std::to_string(n) + "\n";
    render_histogram(out, "kiln_sandbox_create_seconds", "Time from a create request to an exec-ready sandbox.",
                     m_create.bounds_seconds, m_create.buckets, m_create.count, m_create.sum_seconds);
    render_counter(out, "kiln_sandbox_create_failures_total", "Creates and forks that failed.", m_create_failures);
    render_counter(out, "kiln_restore_failures_total", "Snapshot restores the VM layer refused or failed.",
                   m_restore_failures);
    render_counter(out, "kiln_exec_total", "Commands run in sandboxes.", m_exec.count);
    render_histogram(out, "kiln_exec_seconds", "Exec duration, request to exit.", m_exec.bounds_seconds, m_exec.buckets,
                     m_exec.count, m_exec.sum_seconds);
    out += "# HELP kiln_http_requests_total HTTP responses by status code.\n# TYPE kiln_http_requests_total counter\n";
    for (const auto& [status, n] : m_http_by_status)
        out += "kiln_http_requests_total{code=\"" + std::to_string(status) + "\"} " + std::to_string(n) + "\n";
    return out;
}

}  // namespace kiln::daemon
