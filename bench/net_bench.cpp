// Network benchmark: sandbox network setup and teardown, create (restore) latency with a network
// against without in the same run (as a ratio), guest-to-outside TCP throughput and connect
// latency. All traffic stays on this machine (a server namespace the bench makes). Needs root.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "base/child_process.h"
#include "base/clock.h"
#include "base/file_util.h"
#include "base/random.h"
#include "daemon/net/guest_addressing.h"
#include "daemon/net/netns.h"
#include "daemon/net/sandbox_network.h"
#include "bench_util.h"
#include "stats.h"
#include "vm/guest_artifacts.h"
#include "vm/snapshot.h"

using namespace kiln;
using namespace kiln::bench;
using namespace kiln::daemon::net;

namespace {

vm::ExecOutput guest_sh(vm::Vm& vm, const std::string& command) {
    proto::ExecRequest request;
    request.shell = command;
    request.timeout_ms = 120000;
    return must(vm.agent().exec_collect(request), command.c_str());
}

// "The outside": a namespace with a veth to the host, 10.210.0.2 inside.
struct Outside {
    std::string name = "kb-out-" + std::to_string(::getpid());
    std::string veth = "kbo" + std::to_string(::getpid() % 100000);
    UniqueFd fd;
    Outside() {
        fd = must(create_named_netns(name, [] { return ok_status(); }), "outside netns");
        auto r = run_and_capture({"sh", "-c", "ip link add " + veth + " type veth peer name eth0 netns " + name +
                                                  " && ip addr add 10.210.0.1/30 dev " + veth + " && ip link set " +
                                                  veth + " up && ip -n " + name + " link set lo up && ip -n " + name +
                                                  " addr add 10.210.0.2/30 dev eth0 && ip -n " + name + " link set eth0 up"},
                                 Millis(10000));
        if (!r.ok() || !r->status.success()) {
            std::fprintf(stderr, "net_bench: outside namespace: %s\n", r.ok() ? r->output.c_str() : r.error().message.c_str());
            std::exit(1);
        }
    }
    ~Outside() {
        (void)run_and_capture({"ip", "link", "del", veth}, Millis(5000));
        fd.reset();
        (void)remove_named_netns(name);
    }
};

// A TCP sink in the outside namespace: counts bytes per connection and the time from accept to EOF.
struct Sink {
    UniqueFd listener;
    std::thread thread;
    std::atomic<uint64_t> bytes{0};
    std::atomic<double> seconds{0};
    std::atomic<int> connections{0};
    Sink(int netns_fd, uint16_t port) {
        must(Result<Ok>(run_in_netns(netns_fd, [&]() -> Status {
                 listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
                 int one = 1;
                 ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                 sockaddr_in a{};
                 a.sin_family = AF_INET;
                 a.sin_port = htons(port);
                 a.sin_addr.s_addr = htonl(0x0ad20002);
                 if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
                     ::listen(listener.get(), 64) != 0)
                     return make_error("io_error", "bind sink");
                 return ok_status();
             })),
             "sink");
        thread = std::thread([this] {
            std::vector<char> buf(1 << 20);
            for (;;) {
                int c = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
                if (c < 0) return;
                auto start = Clock::now();
                uint64_t n = 0;
                for (;;) {
                    ssize_t r = ::read(c, buf.data(), buf.size());
                    if (r <= 0) break;
                    n += static_cast<uint64_t>(r);
                }
                ::close(c);
                bytes = n;
                seconds = ms_since(start) / 1000.0;
                ++connections;
            }
        });
    }
    ~Sink() {
        ::shutdown(listener.get(), SHUT_RDWR);
        thread.join();
    }
};

std::string take_template(bool nic, NetworkManager& manager, const std::string& dir) {
    std::unique_ptr<SandboxNetwork> net;
    vm::BootOptions boot;
    boot.snapshottable = true;
    if (nic) {
        net = must(manager.setup("bench-tpl-" + must(random_hex(3), "id"), NetworkPolicy{}), "template network");
        boot.net = net->nic();
    }
    auto base = must(vm::Vm::boot(boot), "boot");
    if (nic) must(Result<Ok>(guest_sh(*base, guest_setup_command()).result.exit_code == 0
                                 ? Result<Ok>(Ok{})
                                 : Result<Ok>(make_error("guest", "eth0 setup failed"))),
                  "guest eth0");
    vm::SnapshotRequest snap;
    snap.dir = dir;
    snap.checksums = false;
    must(vm::take_snapshot(*base, snap), "snapshot");
    return dir;
}

}  // namespace

int main() {
    if (::geteuid() != 0) {
        std::fprintf(stderr, "net_bench: needs root\n");
        return 1;
    }
    const int runs = env_int("KILN_BENCH_RUNS", 20);
    NetworkConfig config;
    config.pool = "10.208.0.0/16";
    config.host_table = "kiln_bench";
    config.dns_resolver = "none";
    auto manager = must(NetworkManager::create(config), "network manager");
    std::string accel = "tcg";
    if (auto a = vm::choose_accel(vm::AccelMode::Auto); a.ok()) accel = vm::accel_name(a->accel);

    // 1. Setup and teardown alone (no VM).
    std::vector<double> setup_ms, netns_ms, veth_ms, destroy_ms;
    for (int i = 0; i < runs; ++i) {
        auto net = must(manager->setup("bench-" + must(random_hex(4), "id"), NetworkPolicy{}), "setup");
        setup_ms.push_back(net->timings().ready_ms);
        netns_ms.push_back(net->timings().netns_ms);
        veth_ms.push_back(net->timings().veth_ms - net->timings().netns_ms);
        auto start = Clock::now();
        must(net->destroy(), "destroy");
        destroy_ms.push_back(ms_since(start));
    }
    bench::print_row("net setup (netns+tap+veth+addrs+nft)", bench::summarize(setup_ms), "ms", accel);
    bench::print_row("  of which netns + tap", bench::summarize(netns_ms), "ms", accel);
    bench::print_row("  of which host veth (rtnetlink)", bench::summarize(veth_ms), "ms", accel);
    bench::print_row("net destroy", bench::summarize(destroy_ms), "ms", accel);

    // 2. Create = restore to exec-ready, without a NIC vs with a NIC and its network (setup included).
    std::string snaps = vm::vms_dir() + "/../bench-snapshots";
    (void)make_dirs(snaps);
    std::string plain_dir = take_template(false, *manager, snaps + "/net-plain-" + must(random_hex(4), "id"));
    std::string nic_dir = take_template(true, *manager, snaps + "/net-nic-" + must(random_hex(4), "id"));
    std::vector<double> plain_ms, nic_ms;
    const int create_runs = env_int("KILN_BENCH_NET_CREATE", 1) ? runs : 0;
    for (int i = 0; i < create_runs; ++i) {  // interleaved, so both see the same machine load
        {
            auto start = Clock::now();
            vm::RestoreRequest r;
            r.snapshot_dir = plain_dir;
            auto vm = must(vm::restore_snapshot(r), "restore");
            plain_ms.push_back(ms_since(start));
        }
        {
            auto start = Clock::now();
            auto net = must(manager->setup("bench-" + must(random_hex(4), "id"), NetworkPolicy{}), "setup");
            vm::RestoreRequest r;
            r.snapshot_dir = nic_dir;
            r.net = net->nic();
            auto vm = must(vm::restore_snapshot(r), "restore with NIC");
            net->close_tap();
            nic_ms.push_back(ms_since(start));
        }
    }
    auto plain = bench::summarize(plain_ms), nic = bench::summarize(nic_ms);
    if (create_runs) {
        bench::print_row("create (restore), no network", plain, "ms", accel);
        bench::print_row("create (restore), network setup + NIC", nic, "ms", accel);
        std::printf("%-44s %.2fx (p50 with / p50 without), +%.1f ms\n", "create with network / without",
                    nic.p50 / plain.p50, nic.p50 - plain.p50);
    }

    // 3. Throughput and connect latency, guest -> outside namespace (allowlisted).
    Outside outside;
    Sink sink(outside.fd.get(), 5001);
    NetworkPolicy allow = must(parse_network_policy_text(R"({"mode":"allowlist","allow":["10.210.0.2"]})"), "policy");
    auto net = must(manager->setup("bench-tp-" + must(random_hex(3), "id"), allow), "setup");
    vm::RestoreRequest r;
    r.snapshot_dir = nic_dir;
    r.net = net->nic();
    auto vm = must(vm::restore_snapshot(r), "restore with NIC");
    net->close_tap();
    const int mib = env_int("KILN_BENCH_NET_MIB", 256);
    std::vector<double> mbits;
    for (int i = 0; i < 5; ++i) {
        int before = sink.connections;
        auto out = guest_sh(*vm, "dd if=/dev/zero bs=64k count=" + std::to_string(mib * 16) + " 2>/dev/null | nc 10.210.0.2 5001");
        for (int w = 0; w < 100 && sink.connections == before; ++w) ::usleep(20000);
        if (out.result.exit_code != 0 || sink.bytes != uint64_t(mib) << 20) {
            std::fprintf(stderr, "net_bench: throughput run moved %llu bytes (exit %d): %s\n",
                         static_cast<unsigned long long>(sink.bytes.load()), out.result.exit_code, out.stderr_data.c_str());
            return 1;
        }
        mbits.push_back(double(sink.bytes) * 8 / 1e6 / sink.seconds);
    }
    bench::print_row("guest->outside TCP (dd | busybox nc)", bench::summarize(mbits), "Mbit/s", accel,
                     std::to_string(mib) + " MiB per run");
    // Connect latency: 20 busybox nc connects in a guest loop, against the same loop to a closed
    // guest-local port (the guest's own process spawn cost, the baseline).
    auto loop = [&](const std::string& target) {
        auto start = Clock::now();
        auto out = guest_sh(*vm, "i=0; while [ $i -lt 20 ]; do nc " + target + " </dev/null >/dev/null 2>&1; i=$((i+1)); done");
        (void)out;
        return ms_since(start) / 20;
    };
    std::vector<double> remote, local;
    for (int i = 0; i < 5; ++i) {
        remote.push_back(loop("10.210.0.2 5001"));
        local.push_back(loop("127.0.0.1 9"));
    }
    bench::print_row("guest connect+close to outside (per nc)", bench::summarize(remote), "ms", accel);
    bench::print_row("guest nc to closed local port (baseline)", bench::summarize(local), "ms", accel);
    vm.reset();
    net.reset();

    // 4. The same from the Debian `base` image, with a real TCP sender (Python's socket.sendall of
    //    64 KiB buffers) instead of busybox dd|nc, whose small reads and writes, not the network,
    //    bounded the figure above. Skipped (said so) without the base image: `make image-base`.
    if (vm::find_image("base").ok()) {
        auto base_net = must(manager->setup("bench-tpb-" + must(random_hex(3), "id"), allow), "setup");
        vm::BootOptions options;
        options.image = "base";
        options.memory_mib = 512;
        options.net = base_net->nic();
        auto base = must(vm::Vm::boot(options), "boot base with a NIC");
        base_net->close_tap();
        must(Result<Ok>(guest_sh(*base, guest_setup_command()).result.exit_code == 0
                            ? Result<Ok>(Ok{})
                            : Result<Ok>(make_error("bench", "guest network set-up failed"))),
             "guest network");
        std::vector<double> py_mbits;
        for (int i = 0; i < 5; ++i) {
            int before = sink.connections;
            auto out = guest_sh(*base, "python3 -c 'import socket; s = socket.create_connection((\"10.210.0.2\", 5001)); b = bytes(65536)\n"
                                       "for i in range(" + std::to_string(mib * 16) + "): s.sendall(b)\ns.close()'");
            for (int w = 0; w < 100 && sink.connections == before; ++w) ::usleep(20000);
            if (out.result.exit_code != 0 || sink.bytes != uint64_t(mib) << 20) {
                std::fprintf(stderr, "net_bench: base throughput run moved %llu bytes (exit %d): %s\n",
                             static_cast<unsigned long long>(sink.bytes.load()), out.result.exit_code, out.stderr_data.c_str());
                return 1;
            }
            py_mbits.push_back(double(sink.bytes) * 8 / 1e6 / sink.seconds);
        }
        bench::print_row("guest->outside TCP (base, python sendall)", bench::summarize(py_mbits), "Mbit/s", accel,
                         std::to_string(mib) + " MiB per run; target >= 200");
        // Connect latency in one guest process: 100 connect+close to the sink, against 100 to a
        // closed local port (the guest's own socket cost).
        auto py_loop = [&](const std::string& host, int port) {
            auto out = guest_sh(*base, "python3 -c 'import socket, time\nt = time.monotonic()\nfor i in range(100):\n"
                                       "    s = socket.socket()\n    s.connect_ex((\"" + host + "\", " + std::to_string(port) +
                                       "))\n    s.close()\nprint((time.monotonic() - t) * 10)'");
            return std::atof(out.stdout_data.c_str());
        };
        std::vector<double> py_remote, py_local;
        for (int i = 0; i < 5; ++i) {
            py_remote.push_back(py_loop("10.210.0.2", 5001));
            py_local.push_back(py_loop("127.0.0.1", 9));
        }
        bench::print_row("guest TCP connect+close to outside (base)", bench::summarize(py_remote), "ms", accel);
        bench::print_row("  the same to a closed local port", bench::summarize(py_local), "ms", accel);
        base.reset();
        base_net.reset();
    } else {
        std::printf("guest->outside TCP (base): skipped, no base image (make image-base)\n");
    }
    (void)remove_tree(plain_dir);
    (void)remove_tree(nic_dir);
    (void)manager->remove_host_rules();
    return 0;
}
