// iperf3 for net_bench: a server in a named network namespace (a child process the bench owns)
// and the figures of one client run read from its JSON report (`iperf3 -J`).
#pragma once

#include <unistd.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "base/child_process.h"
#include "base/result.h"

namespace kiln::bench {

// `iperf3 -s` bound to `address`:`port` inside /run/netns/`netns`, killed and reaped with this object.
// It serves one test at a time, any number of them.
class Iperf3Server {
public:
    static Result<std::unique_ptr<Iperf3Server>> start(const std::string& netns, const std::string& address, int port) {
        SpawnOptions options;
        options.argv = {"ip", "netns", "exec", netns, "iperf3", "-s", "-B", address, "-p", std::to_string(port)};
        options.stdout_fd = SpawnOptions::kDevNull;
        auto server = std::unique_ptr<Iperf3Server>(new Iperf3Server);
        server->m_child = TRY(ChildProcess::spawn(options));
        // Listening is checked with `ss` in the namespace, not by connecting: a bare connection to
        // the server would start (and fail) a test.
        const std::string listening = "ss -Hltn src " + address + ":" + std::to_string(port) + " | grep -q LISTEN";
        for (int i = 0; i < 100; ++i) {
            auto r = run_and_capture({"ip", "netns", "exec", netns, "sh", "-c", listening}, Millis(5000));
            if (r.ok() && r->status.success()) return server;
            if (server->m_child->wait_for(Millis(0))) break;
            ::usleep(50000);
        }
        return make_error(ErrorCode::Internal, "iperf3 -s in " + netns + " is not listening on " + address + ":" + std::to_string(port));
    }

private:
    Iperf3Server() = default;
    std::unique_ptr<ChildProcess> m_child;
};

// One client run's result, from its `iperf3 -J` output.
struct Iperf3Run {
    double received_mbits = 0;  // at the receiver, over the whole run: the figure that counts
    double sent_mbits = 0;
    int retransmits = 0;        // sender side (TCP_INFO), for whichever end sent
    double client_cpu = 0;      // % of one CPU: the client process, user+system
    double server_cpu = 0;
};

inline Result<Iperf3Run> parse_iperf3_json(const std::string& text) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return make_error(ErrorCode::Internal, "iperf3 printed no JSON: " + text.substr(0, 200));
    if (j.contains("error")) return make_error(ErrorCode::Internal, "iperf3: " + j["error"].get<std::string>());
    const auto& end = j.value("end", nlohmann::json::object());
    if (!end.contains("sum_received") || !end.contains("sum_sent"))
        return make_error(ErrorCode::Internal, "iperf3 JSON without end.sum_received/sum_sent");
    Iperf3Run run;
    run.received_mbits = end["sum_received"].value("bits_per_second", 0.0) / 1e6;
    run.sent_mbits = end["sum_sent"].value("bits_per_second", 0.0) / 1e6;
    run.retransmits = end["sum_sent"].value("retransmits", 0);
    const auto& cpu = end.value("cpu_utilization_percent", nlohmann::json::object());
    run.client_cpu = cpu.value("host_total", 0.0);
    run.server_cpu = cpu.value("remote_total", 0.0);
    return run;
}

}  // namespace kiln::bench
