// Foundation benchmark: boot to agent-ready, `true` round trip, stdout streaming and file I/O
// throughput, each with its accelerator. Run by `make bench`.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/clock.h"
#include "bench_util.h"
#include "stats.h"
#include "vm/accel.h"
#include "vm/vm.h"

using namespace kiln;
using namespace kiln::bench;
using namespace kiln::vm;

namespace {

[[noreturn]] void fail(const std::string& what, const Error& e) { bench::fail(what + ": " + e.to_string()); }

}  // namespace

int main() {
    const int boots = env_int("KILN_BENCH_BOOTS", 10);
    const int round_trips = env_int("KILN_BENCH_ROUND_TRIPS", 200);
    const uint64_t stream_mb = static_cast<uint64_t>(env_int("KILN_BENCH_STREAM_MB", 200));
    const uint64_t file_mb = static_cast<uint64_t>(env_int("KILN_BENCH_FILE_MB", 50));

    std::printf("# kiln vm_bench: 256 MiB guest, 1 vCPU, image tiny\n");
    std::vector<double> boot_ms, agent_ms;
    std::string accel;
    for (int i = 0; i < boots; ++i) {
        BootOptions options;
        auto start = Clock::now();
        auto vm = Vm::boot(options);
        if (!vm.ok()) fail("boot", vm.error());
        boot_ms.push_back(ms_since(start));
        agent_ms.push_back(static_cast<double>((*vm)->timings().agent_ready_ms));
        accel = accel_name((*vm)->timings().accel);
        (*vm)->destroy();
    }
    bench::print_row("boot to exec-ready (incl. init)", bench::summarize(boot_ms), "ms", accel,
                     "target <= 1000 ms; stock Debian kernel cold boot measured 1550 ms (MEASURED.md)");
    bench::print_row("boot to agent's first answer", bench::summarize(agent_ms), "ms", accel);

    auto vm = Vm::boot(BootOptions{});
    if (!vm.ok()) fail("boot", vm.error());
    AgentClient& agent = (*vm)->agent();

    // The transport's floor (virtio-serial both ways, the agent's loop, no process): what an exec
    // costs beyond it is the guest creating, running and reaping the process.
    std::vector<double> ping_rtt;
    for (int i = 0; i < round_trips + 10; ++i) {
        auto start = Clock::now();
        auto r = agent.ping();
        if (!r.ok()) fail("ping", r.error());
        if (i >= 10) ping_rtt.push_back(ms_since(start));
    }
    bench::print_row("ping round trip (no process)", bench::summarize(ping_rtt), "ms", accel);

    std::vector<double> rtt;
    for (int i = 0; i < round_trips + 10; ++i) {
        proto::ExecRequest req;
        req.argv = {"true"};
        auto start = Clock::now();
        auto r = agent.exec(req);
        if (!r.ok()) fail("exec true", r.error());
        if (i >= 10) rtt.push_back(ms_since(start));  // the first few warm the guest's page cache
    }
    bench::print_row("exec `true` round trip", bench::summarize(rtt), "ms", accel, "target <= 5 ms");

    std::vector<double> stream_rate;
    for (int i = 0; i < 3; ++i) {
        proto::ExecRequest req;
        // dd with 64 KiB blocks: busybox head writes in small pieces and is itself the bottleneck.
        req.shell = "dd if=/dev/zero bs=65536 count=" + std::to_string(stream_mb * 16) + " 2>/dev/null";
        uint64_t bytes = 0;
        ExecIo io;
        io.on_stdout = [&](std::string_view d) { bytes += d.size(); };
        auto start = Clock::now();
        auto r = agent.exec(req, io);
        if (!r.ok()) fail("stream", r.error());
        double secs = ms_since(start) / 1000.0;
        if (bytes != stream_mb << 20) fail("stream", make_error(ErrorCode::ProtocolError, "bytes lost: " + std::to_string(bytes)));
        stream_rate.push_back(static_cast<double>(bytes) / (1 << 20) / secs);
    }
    bench::print_row("stdout streaming", bench::summarize(stream_rate), "MB/s", accel, "target >= 50 MB/s");

    std::vector<double> write_rate, read_rate;
    std::string block(1 << 20, 'k');
    for (int i = 0; i < 3; ++i) {
        uint64_t sent = 0;
        ByteSource source = [&](char* buf, size_t cap) -> Result<size_t> {
            size_t n = std::min<uint64_t>(cap, (file_mb << 20) - sent);
            std::memcpy(buf, block.data(), std::min(n, block.size()));
            sent += n;
            return n;
        };
        auto start = Clock::now();
        auto w = agent.write_file("/tmp/bench.bin", source);
        if (!w.ok()) fail("write", w.error());
        write_rate.push_back(static_cast<double>(*w) / (1 << 20) / (ms_since(start) / 1000.0));
        uint64_t got = 0;
        start = Clock::now();
        auto rd = agent.read_file("/tmp/bench.bin", [&](std::string_view d) -> Status {
            got += d.size();
            return ok_status();
        });
        if (!rd.ok()) fail("read", rd.error());
        read_rate.push_back(static_cast<double>(got) / (1 << 20) / (ms_since(start) / 1000.0));
    }
    bench::print_row("file write (guest tmpfs)", bench::summarize(write_rate), "MB/s", accel);
    bench::print_row("file read (guest tmpfs)", bench::summarize(read_rate), "MB/s", accel);
    (*vm)->destroy();
    return 0;
}
