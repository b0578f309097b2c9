// Per-sandbox networking with real namespaces, taps, nftables and VMs: isolation, same-IP clones, cleanup.
// All traffic stays on this machine: the host, the sandboxes' namespaces and a server namespace
// the tests create. Uses its own pool (10.209.0.0/16) and host table (kiln_test) beside any kilnd.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>

#include "base/child_process.h"
#include "base/clock.h"
#include "base/file_util.h"
#include "base/random.h"
#include "daemon/net/guest_addressing.h"
#include "daemon/net/netns.h"
#include "daemon/net/lazy_network_manager.h"
#include "daemon/net/sandbox_network.h"
#include "daemon/net/spare_networks.h"
#include "vm/guest_artifacts.h"
#include "vm/snapshot.h"
#include "vm/spare_pool.h"
#include "vm_test_env.h"

namespace kiln::test {
namespace {

// Where git keeps its helper programs (git-daemon), from `git --exec-path`.
std::string git_exec_path() {
    std::string path = "/usr/lib/git-core";
    if (FILE* p = ::popen("git --exec-path 2>/dev/null", "r")) {
        char buf[512] = {};
        if (std::fgets(buf, sizeof buf, p)) {
            path = buf;
            path.erase(path.find_last_not_of("\n") + 1);
        }
        ::pclose(p);
    }
    return path;
}

using daemon::net::format_ipv4;
using daemon::net::NetworkManager;
using daemon::net::NetworkPolicy;
using daemon::net::SandboxNetwork;

// Why namespaces cannot be made here, or nothing.
std::optional<std::string> netns_unavailable_reason() {
    if (::geteuid() != 0) return "needs root (network namespaces, taps, nftables)";
    if (::access("/dev/net/tun", R_OK | W_OK) != 0) return "no /dev/net/tun";
    auto nft = run_and_capture({"nft", "--version"}, Millis(5000));
    if (!nft.ok() || !nft->status.success()) return "no nft";
    return std::nullopt;
}

#define KILN_REQUIRE_NETNS()                                                              \
    do {                                                                                  \
        if (auto why_ = netns_unavailable_reason()) {                                     \
            if (::kiln::test::in_ci()) FAIL() << "network tests cannot run: " << *why_;   \
            GTEST_SKIP() << "network tests cannot run: " << *why_;                        \
        }                                                                                 \
    } while (0)

NetworkPolicy policy(const std::string& json) {
    auto p = daemon::net::parse_network_policy_text(json);
    EXPECT_TRUE(p.ok()) << json;
    return p.ok() ? *p : NetworkPolicy{};
}

// What of Kiln's networking exists on the host right now.
struct NetCounts {
    int netns = 0, veths = 0, taps = 0, nft_tables = 0;
    bool operator==(const NetCounts&) const = default;
};
std::ostream& operator<<(std::ostream& os, const NetCounts& c) {
    return os << "{netns " << c.netns << ", veths " << c.veths << ", taps " << c.taps << ", nft tables in netns "
              << c.nft_tables << "}";
}

NetCounts count_network() {
    NetCounts c;
    struct if_nameindex* names = ::if_nameindex();
    for (auto* n = names; n && n->if_name; ++n)
        if (std::string(n->if_name).rfind(daemon::net::kHostVethPrefix, 0) == 0) ++c.veths;
    if (names) ::if_freenameindex(names);
    for (const auto& name : daemon::net::list_named_netns(daemon::net::kNetnsPrefix)) {
        ++c.netns;
        auto fd = daemon::net::open_named_netns(name);
        if (!fd.ok()) continue;
        (void)daemon::net::run_in_netns(fd->get(), [&]() -> Status {
            if (::if_nametoindex(daemon::net::kTapName) != 0) ++c.taps;
            auto tables = run_and_capture({"nft", "list", "tables"}, Millis(5000));
            if (tables.ok())
                for (char ch : tables->output) c.nft_tables += ch == '\n';
            return ok_status();
        });
    }
    return c;
}

// The ids behind every kiln-* namespace present now: the orphan sweep in these tests spares them
// (they may belong to a kilnd running beside the tests).
std::set<std::string> existing_ids() {
    std::set<std::string> ids;
    for (const auto& name : daemon::net::list_named_netns(daemon::net::kNetnsPrefix))
        ids.insert(name.substr(std::string(daemon::net::kNetnsPrefix).size()));
    return ids;
}

std::string sh_ok(const std::string& command) {
    auto r = run_and_capture({"sh", "-c", command}, Millis(10000));
    EXPECT_TRUE(r.ok() && r->status.success()) << command << ": " << (r.ok() ? r->output : r.error().to_string());
    return r.ok() ? r->output : "";
}

// A TCP server that sends a banner and closes, listening in a namespace (or the host's).
class BannerServer {
public:
    // Port 0: any free port (see port()).
    BannerServer(int netns_fd, uint32_t address, uint16_t port) {
        auto bind_it = [&]() -> Status {
            m_fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            int one = 1;
            ::setsockopt(m_fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(port);
            a.sin_addr.s_addr = htonl(address);
            if (::bind(m_fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(m_fd.get(), 16) != 0)
                return make_error(ErrorCode::IoError, "bind/listen " + format_ipv4(address) + ":" + std::to_string(port));
            socklen_t len = sizeof a;
            ::getsockname(m_fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
            m_port = ntohs(a.sin_port);
            m_banner = "kiln-banner-" + std::to_string(m_port);
            return ok_status();
        };
        Status st = netns_fd >= 0 ? daemon::net::run_in_netns(netns_fd, bind_it) : bind_it();
        EXPECT_TRUE(st.ok()) << st.error().to_string();
        m_thread = std::thread([this] {
            for (;;) {
                int c = ::accept4(m_fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
                if (c < 0) return;
                ++m_accepted;
                std::string line = m_banner + "\n";
                (void)!::write(c, line.data(), line.size());
                ::close(c);
            }
        });
    }
    ~BannerServer() {
        ::shutdown(m_fd.get(), SHUT_RDWR);
        m_thread.join();
    }
    const std::string& banner() const { return m_banner; }
    uint16_t port() const { return m_port; }
    int accepted() const { return m_accepted; }

private:
    std::string m_banner;
    uint16_t m_port = 0;
    UniqueFd m_fd;
    std::thread m_thread;
    std::atomic<int> m_accepted{0};
};

// A namespace standing for "the internet" (a git server, a package mirror): its own veth to the
// host, 10.210.0.2 inside, 10.210.0.1 on the host.
class ServerNetns {
public:
    static constexpr uint32_t kHost = 0x0ad20001, kServer = 0x0ad20002;
    ServerNetns() : m_name("kt-srv-" + std::to_string(::getpid())), m_veth("kts" + std::to_string(::getpid() % 100000)) {
        auto fd = daemon::net::create_named_netns(m_name, [] { return ok_status(); });
        EXPECT_TRUE(fd.ok()) << fd.error().to_string();
        if (fd.ok()) m_fd = std::move(*fd);
        sh_ok("ip link add " + m_veth + " type veth peer name eth0 netns " + m_name + " && ip addr add 10.210.0.1/30 dev " +
              m_veth + " && ip link set " + m_veth + " up && ip -n " + m_name + " link set lo up && ip -n " + m_name +
              " addr add 10.210.0.2/30 dev eth0 && ip -n " + m_name + " link set eth0 up && printf 'table ip kt {\\n chain count {\\n type filter hook input priority 0;\\n "
              "tcp dport 9418 tcp flags syn counter\\n }\\n}\\n' | ip netns exec " +
              m_name + " nft -f -");
    }
    // SYNs that reached the server on port 9418, whether or not a connection followed (a spoofed
    // one cannot complete: its replies have no way back), counted by nftables in the namespace.
    int syns_seen() const {
        auto r = run_and_capture({"ip", "netns", "exec", m_name, "nft", "list", "chain", "ip", "kt", "count"}, Millis(5000));
        if (!r.ok()) return -1;
        size_t at = r->output.find("packets ");
        return at == std::string::npos ? -1 : std::atoi(r->output.c_str() + at + 8);
    }
    ~ServerNetns() {
        (void)run_and_capture({"ip", "link", "del", m_veth}, Millis(5000));
        m_fd.reset();
        (void)daemon::net::remove_named_netns(m_name);
    }
    int fd() const { return m_fd.get(); }
    const std::string& name() const { return m_name; }

private:
    std::string m_name, m_veth;
    UniqueFd m_fd;
};

// The manager every test shares: created once (it replaces the kiln_test host table).
NetworkManager& manager() {
    static std::unique_ptr<NetworkManager> m = [] {
        daemon::net::NetworkConfig config;
        config.pool = "10.209.0.0/16";
        config.host_table = "kiln_test";
        config.dns_resolver = "none";
        // The server namespace's address is private (10.210.0.2): `open` reaches it only because
        // the operator's list names it, as kilnd's network_open_allow would.
        config.egress.open_allow = {daemon::net::AllowRule{ServerNetns::kServer, 32, 0}};
        auto created = NetworkManager::create(config);
        EXPECT_TRUE(created.ok()) << created.error().to_string();
        return created.ok() ? std::move(*created) : nullptr;
    }();
    return *m;
}

std::string test_id() { return "t-" + random_hex(5).value(); }

// A VM with a NIC on `net`'s tap, eth0 configured as the template bake would.
std::unique_ptr<vm::Vm> boot_with(SandboxNetwork& net, bool snapshottable = false, const std::string& image = {}) {
    auto options = test_boot_options();
    if (!image.empty()) {
        options.image = image;
        options.memory_mib = 512;
    }
    options.net = net.nic();
    options.snapshottable = snapshottable;
    auto booted = vm::Vm::boot(options);
    EXPECT_TRUE(booted.ok()) << booted.error().to_string();
    if (!booted.ok()) return nullptr;
    net.close_tap();  // QEMU holds it now: the tap lives exactly as long as QEMU
    return std::move(*booted);
}

vm::ExecOutput guest_sh(vm::Vm& vm, const std::string& command) {
    proto::ExecRequest request;
    request.shell = command;
    request.timeout_ms = 60000;
    auto out = vm.agent().exec_collect(request);
    EXPECT_TRUE(out.ok()) << command << ": " << out.error().to_string();
    return out.ok() ? *out : vm::ExecOutput{};
}

// Connects from the guest with busybox nc; the output holds the banner when it got through.
std::string guest_connect(vm::Vm& vm, uint32_t address, uint16_t port) {
    auto out = guest_sh(vm, "nc -w 2 " + format_ipv4(address) + " " + std::to_string(port) + " </dev/null 2>&1; echo rc=$?");
    return out.stdout_data;
}

// Connects from a namespace (the caller's when -1) and reads the banner; "" when nothing answers.
std::string connect_banner(int netns_fd, uint32_t address, uint16_t port) {
    std::string got;
    auto attempt = [&]() -> Status {
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        timeval tv{2, 0};
        ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(address);
        if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return ok_status();
        char buf[256];
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n > 0) got.assign(buf, static_cast<size_t>(n));
        return ok_status();
    };
    if (netns_fd >= 0) (void)daemon::net::run_in_netns(netns_fd, attempt);
    else (void)attempt();
    return got;
}

// True once something accepts TCP connections on address:port inside the namespace (10 s at most):
// a daemon just spawned on a loaded host may take a while to listen.
bool wait_for_listener(int netns_fd, uint32_t address, uint16_t port) {
    for (int i = 0; i < 100; ++i) {
        bool up = false;
        (void)daemon::net::run_in_netns(netns_fd, [&]() -> Status {
            UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(port);
            a.sin_addr.s_addr = htonl(address);
            up = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
            return ok_status();
        });
        if (up) return true;
        ::usleep(100 * 1000);
    }
    return false;
}

uint32_t host_primary_address() {
    struct ifaddrs* list = nullptr;
    uint32_t found = 0;
    if (::getifaddrs(&list) != 0) return 0;
    for (auto* a = list; a && !found; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
        std::string name = a->ifa_name;
        uint32_t addr = ntohl(reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr);
        if (name != "lo" && name.rfind("kv-", 0) != 0 && name.rfind("kts", 0) != 0) found = addr;
    }
    ::freeifaddrs(list);
    return found;
}

TEST(NetPlumbing, SetupMakesEverythingAndDestroyRemovesIt) {
    KILN_REQUIRE_NETNS();
    NetCounts before = count_network();
    std::string id = test_id();
    auto net = manager().setup(id, policy(R"({"mode":"none"})"));
    ASSERT_TRUE(net.ok()) << net.error().to_string();
    NetCounts during = count_network();
    EXPECT_EQ(during.netns, before.netns + 1);
    EXPECT_EQ(during.veths, before.veths + 1);
    EXPECT_EQ(during.taps, before.taps + 1);
    EXPECT_EQ(during.nft_tables, before.nft_tables + 1);
    EXPECT_TRUE(path_exists("/run/netns/kiln-" + id));
    EXPECT_NE(::if_nametoindex((*net)->host_veth().c_str()), 0u);
    std::printf("setup: netns+tap %.1f ms, veth %.1f ms, links %.1f ms, ready %.1f ms\n", (*net)->timings().netns_ms,
                (*net)->timings().veth_ms, (*net)->timings().links_ms, (*net)->timings().ready_ms);
    EXPECT_TRUE((*net)->destroy().ok());
    EXPECT_EQ(count_network(), before);
}

TEST(NetPlumbing, TwoSandboxesGetDistinctSubnetsAndSetupFailsCleanly) {
    KILN_REQUIRE_NETNS();
    NetCounts before = count_network();
    std::string id = test_id();
    auto a = manager().setup(id, policy(R"({"mode":"open"})"));
    auto b = manager().setup(test_id(), policy(R"({"mode":"open"})"));
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_NE((*a)->subnet().network, (*b)->subnet().network);
    auto again = manager().setup(id, policy(R"({"mode":"open"})"));  // the same id twice
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().code, ErrorCode::Conflict);
    EXPECT_TRUE(path_exists("/run/netns/kiln-" + id)) << "a failed setup must not remove another's namespace";
    a->reset();
    b->reset();
    EXPECT_EQ(count_network(), before);
}

TEST(NetPlumbing, OrphanSweepAfterACrashLeavesOnlyLiveSandboxes) {
    KILN_REQUIRE_NETNS();
    NetCounts before = count_network();
    std::set<std::string> live = existing_ids();
    std::string keep_id = test_id();
    auto keep = manager().setup(keep_id, policy(R"({"mode":"none"})"));
    ASSERT_TRUE(keep.ok());
    live.insert(keep_id);
    // Two networks whose owner "crashes": the objects are leaked, nothing is torn down.
    for (int i = 0; i < 2; ++i) {
        auto lost = manager().setup(test_id(), policy(R"({"mode":"open"})"));
        ASSERT_TRUE(lost.ok());
        (void)lost->release();
    }
    EXPECT_EQ(count_network().netns, before.netns + 3);
    auto sweep = manager().cleanup_orphans(live);
    EXPECT_EQ(sweep.netns_removed, 2);
    EXPECT_EQ(sweep.veths_removed, 2);
    EXPECT_TRUE(sweep.errors.empty());
    NetCounts after = count_network();
    EXPECT_EQ(after.netns, before.netns + 1);
    EXPECT_EQ(after.veths, before.veths + 1);
    // After a kilnd restart a live sandbox's network is adopted, then deleted as usual.
    keep->reset();
    EXPECT_EQ(count_network(), before);
}

// A spare network (made ahead for a spare QEMU) is left alone by the orphan sweep while it is
// held, then becomes exactly one sandbox's: renamed to its id, its policy loaded, and it cannot be
// assigned again. Once assigned it is that sandbox's to keep out of sweeps, like any other.
TEST(NetPlumbing, ASpareNetworkSurvivesSweepsThenBecomesOneSandboxs) {
    KILN_REQUIRE_NETNS();
    NetCounts before = count_network();
    std::set<std::string> live = existing_ids();
    std::string spare_id = "spare-" + test_id();
    auto net = manager().setup_spare(spare_id);
    ASSERT_TRUE(net.ok()) << net.error().to_string();
    auto sweep = manager().cleanup_orphans(live);
    EXPECT_EQ(sweep.netns_removed, 0);
    EXPECT_EQ(sweep.veths_removed, 0);
    EXPECT_TRUE(path_exists("/run/netns/kiln-" + spare_id));
    auto forward_chain = [&](const std::string& netns) {
        auto r = run_and_capture({"ip", "netns", "exec", netns, "nft", "list", "chain", "inet", "kiln", "forward"}, Millis(5000));
        return r.ok() ? r->output : std::string();
    };
    std::string spare_rules = forward_chain("kiln-" + spare_id);
    EXPECT_NE(spare_rules.find("policy drop"), std::string::npos) << spare_rules;
    EXPECT_EQ(spare_rules.find("10.210.0.2"), std::string::npos) << spare_rules;

    std::string id = test_id();
    auto start = Clock::now();
    Status assigned = (*net)->assign(id, policy(R"({"mode":"allowlist","allow":["10.210.0.2:9418"]})"));
    double assign_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    ASSERT_TRUE(assigned.ok()) << assigned.error().to_string();
    std::printf("assign (rules + renames): %.2f ms\n", assign_ms);
    EXPECT_EQ((*net)->sandbox_id(), id);
    EXPECT_FALSE(path_exists("/run/netns/kiln-" + spare_id));
    EXPECT_TRUE(path_exists("/run/netns/kiln-" + id));
    EXPECT_EQ((*net)->host_veth(), NetworkManager::host_veth_name(id));
    EXPECT_NE(::if_nametoindex(NetworkManager::host_veth_name(id).c_str()), 0u);
    EXPECT_EQ(::if_nametoindex(NetworkManager::host_veth_name(spare_id).c_str()), 0u);
    EXPECT_EQ(sh_ok("cat /sys/class/net/" + NetworkManager::host_veth_name(id) + "/ifalias"), "kiln-sandbox-" + id + "\n");
    EXPECT_NE(sh_ok("ip -o -4 addr show dev " + NetworkManager::host_veth_name(id)).find("/30"), std::string::npos)
        << "the renamed veth keeps its address";
    std::string rules = forward_chain("kiln-" + id);
    EXPECT_NE(rules.find("10.210.0.2 tcp dport 9418 accept"), std::string::npos) << rules;
    EXPECT_EQ(count_network().nft_tables, before.nft_tables + 1) << "the spare's table is replaced, not added to";

    Status again = (*net)->assign(test_id(), policy(R"({"mode":"open"})"));
    EXPECT_FALSE(again.ok()) << "a network carries one sandbox's policy, never a second's";
    EXPECT_TRUE(path_exists("/run/netns/kiln-" + id));

    // No longer held as a spare: a sweep that does not count its sandbox as live removes it.
    auto orphan_sweep = manager().cleanup_orphans(live);
    EXPECT_EQ(orphan_sweep.netns_removed, 1);
    EXPECT_EQ(orphan_sweep.veths_removed, 1);
    EXPECT_TRUE((*net)->destroy().ok());
    EXPECT_EQ(count_network(), before);
}

// The VM tests: one server namespace, sandboxes with real guests.
class NetVmTest : public ::testing::Test {
protected:
    void SetUp() override {
        KILN_REQUIRE_NETNS();
        KILN_REQUIRE_VM();
        m_before = count_network();
        m_server = std::make_unique<ServerNetns>();
        m_allowed = std::make_unique<BannerServer>(m_server->fd(), ServerNetns::kServer, 9418);
        m_denied = std::make_unique<BannerServer>(m_server->fd(), ServerNetns::kServer, 8080);
    }
    void TearDown() override {
        m_allowed.reset();
        m_denied.reset();
        m_server.reset();
        if (!IsSkipped()) {
            EXPECT_EQ(count_network(), m_before) << "the test left network state behind";
        }
    }
    std::unique_ptr<SandboxNetwork> setup(const std::string& json) {
        auto net = manager().setup(test_id(), policy(json));
        EXPECT_TRUE(net.ok()) << net.error().to_string();
        return net.ok() ? std::move(*net) : nullptr;
    }
    static std::string allow_server() { return R"({"mode":"allowlist","allow":["10.210.0.2:9418"]})"; }

    NetCounts m_before;
    std::unique_ptr<ServerNetns> m_server;
    std::unique_ptr<BannerServer> m_allowed, m_denied;
};

TEST_F(NetVmTest, AllowlistReachesOnlyWhatItLists) {
    auto net = setup(allow_server());
    ASSERT_TRUE(net);
    auto vm = boot_with(*net);
    ASSERT_TRUE(vm);
    ASSERT_EQ(guest_sh(*vm, daemon::net::guest_setup_command()).result.exit_code, 0);
    EXPECT_NE(guest_connect(*vm, ServerNetns::kServer, 9418).find(m_allowed->banner()), std::string::npos)
        << "the allowed port must work (else the other checks prove nothing)";
    EXPECT_EQ(guest_connect(*vm, ServerNetns::kServer, 8080).find("kiln-banner"), std::string::npos);
    EXPECT_EQ(m_denied->accepted(), 0);
    // DNS at the gateway: no resolver configured and none allowed, so nothing answers.
    auto dns = guest_sh(*vm, "nslookup -timeout=1 example.org 2>&1; echo rc=$?");
    EXPECT_EQ(dns.stdout_data.find("Address: "), std::string::npos) << dns.stdout_data;
}

TEST_F(NetVmTest, NoneReachesNothing) {
    auto net = setup(R"({"mode":"none"})");
    ASSERT_TRUE(net);
    auto vm = boot_with(*net);
    ASSERT_TRUE(vm);
    ASSERT_EQ(guest_sh(*vm, daemon::net::guest_setup_command()).result.exit_code, 0);
    EXPECT_EQ(guest_connect(*vm, ServerNetns::kServer, 9418).find("kiln-banner"), std::string::npos);
    EXPECT_EQ(m_allowed->accepted(), 0);
}

TEST_F(NetVmTest, OpenReachesOutsideButNeverTheHostNorAnotherSandbox) {
    // Host services: one on every address (kilnd's port is such a listener) and one on loopback.
    uint32_t host_addr = host_primary_address();
    ASSERT_NE(host_addr, 0u);
    BannerServer host_any(-1, INADDR_ANY, 0);
    BannerServer host_loopback(-1, INADDR_LOOPBACK, 0);
    const uint16_t any_port = host_any.port(), loopback_port = host_loopback.port();
    auto a = setup(R"({"mode":"open"})");
    auto b = setup(R"({"mode":"open"})");
    ASSERT_TRUE(a && b);
    // A service inside sandbox b's namespace, on its pool address.
    BannerServer b_service(b->netns_fd(), b->subnet().netns_address(), 17073);
    // The listeners work: reachable from the server namespace (not a sandbox), so their silence
    // below is the isolation, not a broken listener.
    EXPECT_NE(connect_banner(m_server->fd(), ServerNetns::kHost, any_port).find(host_any.banner()), std::string::npos);
    EXPECT_NE(connect_banner(-1, INADDR_LOOPBACK, loopback_port).find(host_loopback.banner()), std::string::npos);
    EXPECT_NE(connect_banner(b->netns_fd(), b->subnet().netns_address(), 17073).find(b_service.banner()), std::string::npos);
    auto vm_a = boot_with(*a);
    ASSERT_TRUE(vm_a);
    ASSERT_EQ(guest_sh(*vm_a, daemon::net::guest_setup_command()).result.exit_code, 0);

    EXPECT_NE(guest_connect(*vm_a, ServerNetns::kServer, 8080).find(m_denied->banner()), std::string::npos)
        << "open mode reaches any outside port";
    int host_accepted = host_any.accepted();
    int loopback_accepted = host_loopback.accepted();
    EXPECT_EQ(guest_connect(*vm_a, a->subnet().host_address(), any_port).find("kiln-banner"), std::string::npos);
    EXPECT_EQ(guest_connect(*vm_a, host_addr, any_port).find("kiln-banner"), std::string::npos);
    EXPECT_EQ(guest_connect(*vm_a, ServerNetns::kHost, any_port).find("kiln-banner"), std::string::npos);
    EXPECT_EQ(guest_connect(*vm_a, 0x7f000001, loopback_port).find("kiln-banner"), std::string::npos);
    EXPECT_EQ(host_any.accepted(), host_accepted);
    int b_accepted = b_service.accepted();
    EXPECT_EQ(host_loopback.accepted(), loopback_accepted);
    // Another sandbox: its namespace end and its host end.
    EXPECT_EQ(guest_connect(*vm_a, b->subnet().netns_address(), 17073).find("kiln-banner"), std::string::npos);
    EXPECT_EQ(guest_connect(*vm_a, b->subnet().host_address(), any_port).find("kiln-banner"), std::string::npos);
    EXPECT_EQ(b_service.accepted(), b_accepted);
}

TEST_F(NetVmTest, TwoSandboxesWithTheSameGuestAddressAtOnce) {
    auto a = setup(allow_server());
    auto b = setup(allow_server());
    ASSERT_TRUE(a && b);
    auto vm_a = boot_with(*a);
    auto vm_b = boot_with(*b);
    ASSERT_TRUE(vm_a && vm_b);
    for (auto* vm : {vm_a.get(), vm_b.get()}) ASSERT_EQ(guest_sh(*vm, daemon::net::guest_setup_command()).result.exit_code, 0);
    // The address lines only: the link flags (NO-CARRIER for a moment after set-up) may differ.
    const char* address = "ip -4 -o addr show eth0 | awk '{print $4}'";
    std::string addr_a = guest_sh(*vm_a, address).stdout_data;
    EXPECT_EQ(addr_a, "172.30.0.2/30\n");
    EXPECT_EQ(addr_a, guest_sh(*vm_b, address).stdout_data);
    // Both at the same time: each holds a connection open while the other connects.
    std::string out_a, out_b;
    std::thread t([&] { out_a = guest_connect(*vm_a, ServerNetns::kServer, 9418); });
    out_b = guest_connect(*vm_b, ServerNetns::kServer, 9418);
    t.join();
    EXPECT_NE(out_a.find(m_allowed->banner()), std::string::npos) << out_a;
    EXPECT_NE(out_b.find(m_allowed->banner()), std::string::npos) << out_b;
}

TEST_F(NetVmTest, SpoofedSourceAddressIsDropped) {
    auto net = setup(allow_server());
    ASSERT_TRUE(net);
    auto vm = boot_with(*net);
    ASSERT_TRUE(vm);
    ASSERT_EQ(guest_sh(*vm, daemon::net::guest_setup_command()).result.exit_code, 0);
    int syns = m_server->syns_seen();
    ASSERT_NE(guest_connect(*vm, ServerNetns::kServer, 9418).find("kiln-banner"), std::string::npos);
    ASSERT_GT(m_server->syns_seen(), syns) << "the SYN counter must see a real connection (control)";
    int accepted = m_allowed->accepted();
    syns = m_server->syns_seen();
    // Another source address on eth0, used for the route to the server.
    ASSERT_EQ(guest_sh(*vm, "ip addr add 172.30.0.9/30 dev eth0 && ip route add 10.210.0.2/32 via 172.30.0.1 src "
                            "172.30.0.9 && ip route get 10.210.0.2")
                  .result.exit_code,
              0);
    EXPECT_EQ(guest_connect(*vm, ServerNetns::kServer, 9418).find("kiln-banner"), std::string::npos);
    EXPECT_EQ(m_allowed->accepted(), accepted);
    EXPECT_EQ(m_server->syns_seen(), syns) << "a spoofed SYN left the sandbox";
    // Back to the real address: it works again, so the drop was the source check.
    ASSERT_EQ(guest_sh(*vm, "ip route del 10.210.0.2/32").result.exit_code, 0);
    EXPECT_NE(guest_connect(*vm, ServerNetns::kServer, 9418).find("kiln-banner"), std::string::npos);
}

TEST_F(NetVmTest, QemuCrashLeavesNothingAfterDestroy) {
    auto net = setup(R"({"mode":"open"})");
    ASSERT_TRUE(net);
    auto vm = boot_with(*net);
    ASSERT_TRUE(vm);
    EXPECT_EQ(count_network().taps, m_before.taps + 1);
    ASSERT_EQ(::kill(vm->pid(), SIGKILL), 0);
    vm->wait_exit(Millis(10000));
    EXPECT_EQ(count_network().taps, m_before.taps) << "the tap goes with QEMU's fd";
    vm.reset();
    net.reset();  // TearDown counts what is left
}

TEST_F(NetVmTest, RestoredAndForkedClonesNeedNoReaddressing) {
    auto template_net = setup(R"({"mode":"none"})");
    ASSERT_TRUE(template_net);
    auto base = boot_with(*template_net, /*snapshottable=*/true);
    ASSERT_TRUE(base);
    ASSERT_EQ(guest_sh(*base, daemon::net::guest_setup_command() + " && ping -c1 -W1 172.30.0.1 >/dev/null; true").result.exit_code, 0);
    std::string dir = vm::vms_dir() + "/../test-snapshots/net-" + random_hex(6).value();
    (void)make_dirs(vm::vms_dir() + "/../test-snapshots");
    vm::SnapshotRequest snap;
    snap.dir = dir;
    snap.checksums = false;
    auto manifest = vm::take_snapshot(*base, snap);
    ASSERT_TRUE(manifest.ok()) << manifest.error().to_string();
    EXPECT_TRUE(manifest->nic);
    base.reset();
    template_net.reset();

    // Without a NIC the snapshot is refused before anything starts.
    vm::RestoreRequest bare;
    bare.snapshot_dir = dir;
    auto refused = vm::restore_snapshot(bare);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, ErrorCode::SnapshotIncompatible);

    auto net = setup(allow_server());
    ASSERT_TRUE(net);
    vm::RestoreRequest request;
    request.snapshot_dir = dir;
    request.net = net->nic();
    vm::RestoreTimings timings;
    auto restored = vm::restore_snapshot(request, &timings);
    ASSERT_TRUE(restored.ok()) << restored.error().to_string();
    net->close_tap();
    std::printf("restore with NIC: ready in %lld ms\n", static_cast<long long>(timings.ready_ms));
    EXPECT_NE(guest_connect(**restored, ServerNetns::kServer, 9418).find("kiln-banner"), std::string::npos)
        << "a restored guest works with the template's address, route and ARP entry";

    auto child_net = setup(allow_server());
    ASSERT_TRUE(child_net);
    vm::ForkRequest fork;
    auto no_nic = vm::fork_vm(**restored, fork);
    ASSERT_FALSE(no_nic.ok()) << "a fork of a VM with a NIC needs its own";
    fork.net = child_net->nic();
    auto child = vm::fork_vm(**restored, fork);
    ASSERT_TRUE(child.ok()) << child.error().to_string();
    child_net->close_tap();
    EXPECT_NE(guest_connect(**child, ServerNetns::kServer, 9418).find("kiln-banner"), std::string::npos);
    EXPECT_NE(guest_connect(**restored, ServerNetns::kServer, 9418).find("kiln-banner"), std::string::npos);
    child->reset();
    restored->reset();
    (void)remove_tree(dir);
}

// A spare QEMU of a snapshot with a NIC starts on a network made ahead (SpareNetworks, policy
// none); the restore that takes it hands that network over, and it is assigned the sandbox's id and
// policy. Two restores in a row with different allowlists each reach their own port alone; without
// a spare ready, a restore that asked for one fails having started nothing.
TEST_F(NetVmTest, SpareWithItsNetworkServesRestoresEachWithItsOwnPolicy) {
    auto template_net = setup(R"({"mode":"none"})");
    ASSERT_TRUE(template_net);
    auto base = boot_with(*template_net, /*snapshottable=*/true);
    ASSERT_TRUE(base);
    ASSERT_EQ(guest_sh(*base, daemon::net::guest_setup_command()).result.exit_code, 0);
    std::string dir = vm::vms_dir() + "/../test-snapshots/net-spare-" + random_hex(6).value();
    (void)make_dirs(vm::vms_dir() + "/../test-snapshots");
    vm::SnapshotRequest snap;
    snap.dir = dir;
    snap.checksums = false;
    ASSERT_TRUE(vm::take_snapshot(*base, snap).ok());
    base.reset();
    template_net.reset();

    // Its own pool and host table, beside manager()'s.
    daemon::net::NetworkConfig config;
    config.pool = "10.207.0.0/16";
    config.host_table = "kiln_test_spare";
    config.dns_resolver = "none";
    daemon::net::LazyNetworkManager networks(config);
    daemon::net::SpareNetworks spare_networks(networks, dir);
    {
        vm::SparePool pool;
        std::unique_ptr<vm::SpareNic> none;
        vm::RestoreRequest early;
        early.snapshot_dir = dir;
        early.spares = &pool;
        early.spare_nic = &none;
        auto refused = vm::restore_snapshot(early);
        ASSERT_FALSE(refused.ok()) << "no spare was prepared";
        EXPECT_EQ(refused.error().code, ErrorCode::Unavailable);
        EXPECT_FALSE(none);

        pool.prepare(dir, spare_networks.source());
        struct Sandbox {
            std::unique_ptr<vm::Vm> vm;
            std::unique_ptr<SandboxNetwork> net;
        };
        std::vector<Sandbox> made;
        for (uint16_t port : {uint16_t(9418), uint16_t(8080)}) {
            for (int i = 0; i < 300 && pool.pids().empty(); ++i) ::usleep(100 * 1000);
            ASSERT_EQ(pool.pids().size(), 1u) << "no spare started with its network";
            std::unique_ptr<vm::SpareNic> nic;
            vm::RestoreRequest request;
            request.snapshot_dir = dir;
            request.spares = &pool;
            request.spare_nic = &nic;
            vm::RestoreTimings timings;
            auto restored = vm::restore_snapshot(request, &timings);
            ASSERT_TRUE(restored.ok()) << restored.error().to_string();
            EXPECT_TRUE(timings.spare);
            ASSERT_TRUE(nic);
            auto net = daemon::net::SpareNetworks::claim(
                std::move(nic), test_id(), policy(R"({"mode":"allowlist","allow":["10.210.0.2:)" + std::to_string(port) + "\"]}"));
            ASSERT_TRUE(net.ok()) << net.error().to_string();
            (*net)->close_tap();
            std::printf("restore from a spare with its network: ready in %lld ms\n", static_cast<long long>(timings.ready_ms));
            made.push_back({std::move(*restored), std::move(*net)});
        }
        const std::string& allowed = m_allowed->banner();
        const std::string& denied = m_denied->banner();
        EXPECT_NE(guest_connect(*made[0].vm, ServerNetns::kServer, 9418).find(allowed), std::string::npos);
        EXPECT_EQ(guest_connect(*made[0].vm, ServerNetns::kServer, 8080).find(denied), std::string::npos);
        EXPECT_NE(guest_connect(*made[1].vm, ServerNetns::kServer, 8080).find(denied), std::string::npos);
        EXPECT_EQ(guest_connect(*made[1].vm, ServerNetns::kServer, 9418).find(allowed), std::string::npos);
        for (auto& sb : made) {
            sb.vm.reset();  // the VM first: QEMU holds the tap
            sb.net.reset();
        }
        pool.discard();  // the refilled spare and its network
    }
    if (auto m = networks.get(); m.ok()) (void)(*m)->remove_host_rules();
    (void)remove_tree(dir);
}

// git by exact SHA needs git in the guest: the Debian `base` image (`make test` builds it; git
// is installed on the host by scripts/install-deps.sh).
TEST_F(NetVmTest, GitCloneBySha) {
    auto has_git = run_and_capture({"git", "--version"}, Millis(5000));
    ASSERT_TRUE(has_git.ok() && has_git->status.success()) << "no git on the host";
    ASSERT_TRUE(vm::find_image("base").ok()) << "the base image is missing: make image-base";
    std::string repo = "/tmp/kiln-net-git-" + random_hex(4).value();
    sh_ok("mkdir -p " + repo + "/src && cd " + repo + "/src && git init -q && git config user.email t@k && git config "
          "user.name t && echo one > f && git add f && git commit -qm one && echo two > f && git commit -qam two && git "
          "clone -q --bare . ../repo.git && git -C ../repo.git config uploadpack.allowAnySHA1InWant true");
    std::string first_sha = sh_ok("git -C " + repo + "/src rev-parse HEAD~1");
    first_sha.erase(first_sha.find_last_not_of("\n") + 1);
    // git daemon inside the server namespace, on the allowed port (9418: the banner server moves aside).
    m_allowed.reset();
    std::unique_ptr<ChildProcess> daemon;
    auto started = daemon::net::run_in_netns(m_server->fd(), [&]() -> Status {
        SpawnOptions options;
        // git-daemon itself, not `git daemon`: git would run it as a child, and killing git
        // would leave the daemon running (holding the test's stdout open).
        options.argv = {git_exec_path() + "/git-daemon", "--reuseaddr", "--listen=10.210.0.2", "--port=9418", "--export-all",
                        "--base-path=" + repo, repo};
        options.die_with_parent = false;  // the spawning thread ends at once; the test kills it
        daemon = TRY(ChildProcess::spawn(options));
        return ok_status();
    });
    ASSERT_TRUE(started.ok()) << started.error().to_string();
    ASSERT_TRUE(wait_for_listener(m_server->fd(), ServerNetns::kServer, 9418)) << "git-daemon did not start listening";

    auto net = setup(allow_server());
    ASSERT_TRUE(net);
    auto vm = boot_with(*net, false, "base");
    ASSERT_TRUE(vm);
    ASSERT_EQ(guest_sh(*vm, daemon::net::guest_setup_command()).result.exit_code, 0);
    auto clone = guest_sh(*vm, "cd /tmp && git init -q r && cd r && git fetch -q --depth 1 git://10.210.0.2/repo.git " +
                                   first_sha + " && git checkout -q FETCH_HEAD && cat f");
    EXPECT_EQ(clone.result.exit_code, 0) << clone.stderr_data;
    EXPECT_EQ(clone.stdout_data, "one\n");
    auto head = guest_sh(*vm, "cd /tmp/r && git rev-parse HEAD");
    EXPECT_EQ(head.stdout_data, first_sha + "\n");
    daemon->kill_and_reap();
    (void)remove_tree(repo);
}

}  // namespace
}  // namespace kiln::test
