// Network benchmark: sandbox network setup and teardown, create (restore) latency with a network
// against without in the same run (as a ratio), guest-to-outside TCP throughput (iperf3 in the
// `base` image) and connect latency. All traffic stays on this machine (an "outside" namespace the
// bench makes, with the iperf3 server in it). Needs root.
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
#include "bench_util.h"
#include "daemon/net/guest_addressing.h"
#include "daemon/net/netns.h"
#include "daemon/net/sandbox_network.h"
#include "iperf3.h"
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
                     return make_error(ErrorCode::IoError, "bind sink");
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
                                 : Result<Ok>(make_error(ErrorCode::Internal, "eth0 setup failed"))),
                  "guest eth0");
    vm::SnapshotRequest snap;
    snap.dir = dir;
    snap.checksums = false;
    must(vm::take_snapshot(*base, snap), "snapshot");
    return dir;
}

// What the guest's virtio-net driver negotiated with QEMU (virtio feature bits, as the guest's
// sysfs shows them): the offloads that let 64 KiB segments cross the tap instead of 1500-byte frames.
void print_offloads(vm::Vm& vm) {
    auto out = guest_sh(vm, "cat /sys/class/net/eth0/device/features; cat /sys/class/net/eth0/mtu");
    const std::string& bits = out.stdout_data;
    static const std::pair<int, const char*> kNames[] = {
        {0, "csum"}, {1, "guest_csum"}, {7, "guest_tso4"}, {11, "host_tso4"}, {15, "mrg_rxbuf"},
        {17, "ctrl_vq"}, {22, "mq"}, {28, "indirect_desc"}, {29, "event_idx"}, {32, "version_1"}};
    std::string on, off;
    for (auto [bit, name] : kNames) {
        bool set = bits.size() > size_t(bit) && bits[size_t(bit)] == '1';
        (set ? on : off) += std::string(" ") + name;
    }
    size_t nl = bits.find('\n');
    std::printf("%-44s on:%s; off:%s; mtu %s", "guest virtio-net features", on.c_str(), off.c_str(),
                nl == std::string::npos ? "?\n" : bits.substr(nl + 1).c_str());
}

// Boots `base` with $KILN_BENCH_NET_VCPUS vCPUs (default 1) and a NIC on a fresh network
// (`policy`), eth0 configured, then runs $KILN_BENCH_NET_GUEST_PREP in the guest if set (a way to
// try guest sysctls against the same run conditions without a rebuild; its output is printed).
struct BaseGuest {
    std::unique_ptr<SandboxNetwork> net;
    std::unique_ptr<vm::Vm> vm;
};
Result<BaseGuest> boot_base(NetworkManager& manager, const NetworkPolicy& policy) {
    BaseGuest g;
    g.net = TRY(manager.setup("bench-tpb-" + TRY(random_hex(3)), policy));
    vm::BootOptions options;
    options.image = "base";
    options.memory_mib = 512;
    options.vcpus = static_cast<uint32_t>(env_int("KILN_BENCH_NET_VCPUS", 1));
    options.net = g.net->nic();
    // $KILN_BENCH_NET_KERNEL_ARGS: extra guest kernel arguments (e.g. virtio_net.napi_tx=0), to
    // measure a driver setting before it goes into the kernel command line.
    if (const char* args = std::getenv("KILN_BENCH_NET_KERNEL_ARGS"))
        for (std::string rest = args; !rest.empty();) {
            size_t sp = rest.find(' ');
            if (sp != 0) options.extra_kernel_args.push_back(rest.substr(0, sp));
            rest = sp == std::string::npos ? "" : rest.substr(sp + 1);
        }
    g.vm = TRY(vm::Vm::boot(options));
    g.net->close_tap();
    std::string setup = guest_setup_command();
    if (const char* prep = std::getenv("KILN_BENCH_NET_GUEST_PREP")) setup += std::string(" && { ") + prep + "; }";
    auto out = guest_sh(*g.vm, setup);
    if (out.result.exit_code != 0) return make_error(ErrorCode::Internal, "guest network set-up: " + out.stderr_data);
    if (!out.stdout_data.empty()) std::printf("guest prep said: %s", out.stdout_data.c_str());
    print_offloads(*g.vm);
    return g;
}

// iperf3 runs of $KILN_BENCH_NET_IPERF_SECONDS each (default 5), guest -> outside and, with -R,
// outside -> guest; then per-connect TCP latency from one guest process. Errors are returned, not
// exit()ed on, so that the VM, its network and the outside namespace are removed on the way out.
Status measure_base(NetworkManager& manager, const NetworkPolicy& policy, const Outside& outside, const std::string& accel) {
    auto server = TRY(Iperf3Server::start(outside.name, "10.210.0.2", 5201));
    BaseGuest g = TRY(boot_base(manager, policy));
    if (guest_sh(*g.vm, "command -v iperf3").result.exit_code != 0)
        return make_error(ErrorCode::Internal, "no iperf3 in the base image: rebuild it (make image-base)");
    const int runs = env_int("KILN_BENCH_NET_IPERF_RUNS", 5);
    const std::string seconds = std::to_string(env_int("KILN_BENCH_NET_IPERF_SECONDS", 5));
    for (const char* direction : {"", " -R"}) {
        std::vector<double> mbits, client_cpu, server_cpu;
        int retransmits = 0;
        for (int i = 0; i < runs; ++i) {
            auto out = guest_sh(*g.vm, "iperf3 -c 10.210.0.2 -p 5201 -J -t " + seconds + direction);
            auto run = TRY(parse_iperf3_json(out.stdout_data));
            mbits.push_back(run.received_mbits);
            client_cpu.push_back(run.client_cpu);
            server_cpu.push_back(run.server_cpu);
            retransmits += run.retransmits;
        }
        const bool reverse = *direction != '\0';
        bench::print_row(reverse ? "outside->guest TCP (base, iperf3 -R)" : "guest->outside TCP (base, iperf3)",
                         bench::summarize(mbits), "Mbit/s", accel,
                         seconds + " s per run, " + std::to_string(retransmits) + " retransmits in all" +
                             (reverse ? "" : "; target >= 200"));
        std::printf("%-44s guest %.0f%%, outside %.0f%% (p50 of iperf3's user+system)\n", "  iperf3 CPU",
                    bench::summarize(client_cpu).p50, bench::summarize(server_cpu).p50);
    }
    // Connect latency: each sample is one connect() to the sink (SYN out, SYN-ACK back) timed in
    // the guest, 50 per run in one Python process; the same to a closed local port (RST from the
    // guest's own stack) is the guest's socket cost alone.
    auto samples = [&](const std::string& host, int port, std::vector<double>& into) -> Status {
        auto out = guest_sh(*g.vm, "python3 -c 'import socket, time\nfor i in range(50):\n"
                                   "    s = socket.socket()\n    t = time.monotonic()\n"
                                   "    s.connect_ex((\"" + host + "\", " + std::to_string(port) +
                                   "))\n    print((time.monotonic() - t) * 1000)\n    s.close()'");
        if (out.result.exit_code != 0) return make_error(ErrorCode::Internal, "connect loop: " + out.stderr_data);
        for (size_t at = 0; at < out.stdout_data.size();) {
            size_t nl = out.stdout_data.find('\n', at);
            if (nl == std::string::npos) nl = out.stdout_data.size();
            into.push_back(std::atof(out.stdout_data.substr(at, nl - at).c_str()));
            at = nl + 1;
        }
        return ok_status();
    };
    std::vector<double> remote, local;
    for (int i = 0; i < runs; ++i) {
        TRY(samples("10.210.0.2", 5001, remote));
        TRY(samples("127.0.0.1", 9, local));
    }
    bench::print_row("guest TCP connect to outside (base)", bench::summarize(remote), "ms", accel);
    bench::print_row("  the same to a closed local port", bench::summarize(local), "ms", accel);
    return ok_status();
}

// busybox dd | nc from a `tiny` restore, and busybox nc connect+close loops.
void measure_busybox(NetworkManager& manager, const NetworkPolicy& policy, const std::string& nic_dir, Sink& sink,
                     const std::string& accel) {
    auto net = must(manager.setup("bench-tp-" + must(random_hex(3), "id"), policy), "setup");
    vm::RestoreRequest r;
    r.snapshot_dir = nic_dir;
    r.net = net->nic();
    auto vm = must(vm::restore_snapshot(r), "restore with NIC");
    net->close_tap();
    const int mib = env_int("KILN_BENCH_NET_MIB", 64);
    std::vector<double> mbits;
    for (int i = 0; i < 5; ++i) {
        int before = sink.connections;
        auto out = guest_sh(*vm, "dd if=/dev/zero bs=64k count=" + std::to_string(mib * 16) + " 2>/dev/null | nc 10.210.0.2 5001");
        for (int w = 0; w < 100 && sink.connections == before; ++w) ::usleep(20000);
        if (out.result.exit_code != 0 || sink.bytes != uint64_t(mib) << 20)
            fail("throughput run moved " + std::to_string(sink.bytes.load()) + " bytes (exit " +
                 std::to_string(out.result.exit_code) + "): " + out.stderr_data);
        mbits.push_back(double(sink.bytes) * 8 / 1e6 / sink.seconds);
    }
    bench::print_row("guest->outside TCP (tiny, dd | busybox nc)", bench::summarize(mbits), "Mbit/s", accel,
                     std::to_string(mib) + " MiB per run");
    // 20 busybox nc connects in a guest loop, against the same loop to a closed guest-local port
    // (the guest's own process spawn cost, the baseline).
    auto loop = [&](const std::string& target) {
        auto start = Clock::now();
        (void)guest_sh(*vm, "i=0; while [ $i -lt 20 ]; do nc " + target + " </dev/null >/dev/null 2>&1; i=$((i+1)); done");
        return ms_since(start) / 20;
    };
    std::vector<double> remote, local;
    for (int i = 0; i < 5; ++i) {
        remote.push_back(loop("10.210.0.2 5001"));
        local.push_back(loop("127.0.0.1 9"));
    }
    bench::print_row("guest connect+close to outside (tiny, per nc)", bench::summarize(remote), "ms", accel);
    bench::print_row("guest nc to closed local port (baseline)", bench::summarize(local), "ms", accel);
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
    const int create_runs = env_int("KILN_BENCH_NET_CREATE", 1) ? runs : 0;
    const bool busybox = env_int("KILN_BENCH_NET_BUSYBOX", 0) != 0;
    // The templates cost two tiny boots: only made when something restores them.
    std::string plain_dir, nic_dir;
    if (create_runs) plain_dir = take_template(false, *manager, snaps + "/net-plain-" + must(random_hex(4), "id"));
    if (create_runs || busybox) nic_dir = take_template(true, *manager, snaps + "/net-nic-" + must(random_hex(4), "id"));
    std::vector<double> plain_ms, nic_ms;
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

    // 3. Guest -> outside namespace (allowlisted) from the Debian `base` image: iperf3 as the
    //    client in the guest, its server in the outside namespace, and TCP connect latency.
    Outside outside;
    Sink sink(outside.fd.get(), 5001);
    NetworkPolicy allow = must(parse_network_policy_text(R"({"mode":"allowlist","allow":["10.210.0.2"]})"), "policy");
    int rc = 0;
    if (vm::find_image("base").ok()) {
        if (auto s = measure_base(*manager, allow, outside, accel); !s.ok()) {
            std::fprintf(stderr, "net_bench: base: %s\n", s.error().to_string().c_str());
            rc = 1;
        }
    } else {
        std::printf("guest->outside TCP (base): skipped, no base image (make image-base)\n");
    }

    // 4. Optional (KILN_BENCH_NET_BUSYBOX=1): the same from `tiny` with busybox dd | nc, whose
    //    small reads and writes in one process under TCG, not the network, bound its figure; kept
    //    to compare with the first measurements (docs/network.md).
    if (busybox) measure_busybox(*manager, allow, nic_dir, sink, accel);
    if (!plain_dir.empty()) (void)remove_tree(plain_dir);
    if (!nic_dir.empty()) (void)remove_tree(nic_dir);
    (void)manager->remove_host_rules();
    return rc;
}
