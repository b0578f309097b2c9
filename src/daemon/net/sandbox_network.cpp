// Sets up and tears down one sandbox's network: namespace, tap, veth, addresses and nftables.
#include "daemon/net/sandbox_network.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>

#include "base/clock.h"
#include "base/errno_error.h"
#include "base/sha256.h"
#include "daemon/net/guest_addressing.h"
#include "daemon/net/netns.h"
#include "daemon/net/nft_loader.h"
#include "daemon/net/nft_rules.h"
#include "daemon/net/rtnetlink.h"

namespace kiln::daemon::net {
namespace {

// The gateway's MAC (the tap's): fixed like the guest's, so a restored or forked guest's ARP
// entry for the gateway is right in every sandbox and no ARP flush is needed.
constexpr const char* kGatewayMac = "52:54:00:6b:69:01";

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// The host's IPv4 addresses, every interface (the calling thread's namespace: the host's).
std::vector<std::pair<std::string, uint32_t>> interface_addresses() {
    std::vector<std::pair<std::string, uint32_t>> out;
    struct ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) return out;
    for (auto* a = list; a; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
        uint32_t addr = ntohl(reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr);
        out.emplace_back(a->ifa_name, addr);
    }
    ::freeifaddrs(list);
    return out;
}

// The first usable IPv4 resolver in resolv.conf: loopback ones are skipped (a sandbox can never
// reach host loopback), so is anything that does not parse.
uint32_t resolver_from_resolv_conf() {
    std::ifstream in("/etc/resolv.conf");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("nameserver", 0) != 0) continue;
        size_t start = line.find_first_not_of(" \t", 10);
        if (start == std::string::npos) continue;
        size_t end = line.find_first_of(" \t#", start);
        auto addr = parse_ipv4(line.substr(start, end == std::string::npos ? std::string::npos : end - start));
        if (addr.ok() && (*addr >> 24) != 127 && *addr != 0) return *addr;
    }
    return 0;
}

// Opens the tap in the calling thread's namespace. IFF_VNET_HDR lets QEMU pass offloads through;
// the tap disappears with its last fd (no IFF_PERSIST): QEMU's exit or crash removes it.
Result<UniqueFd> open_tap() {
    UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!fd) return errno_error("open /dev/net/tun");
    struct ifreq ifr;
    std::memset(&ifr, 0, sizeof ifr);
    std::strncpy(ifr.ifr_name, kTapName, IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) return errno_error("create tap device (TUNSETIFF)");
    return fd;
}

Status write_optional_sysctl(const std::string& path, const std::string& value) {
    // Absent when the kernel has no IPv6: then there is nothing to turn off.
    if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return ok_status();
    return write_sysctl(path, value);
}

// Deletes `veths`, then the namespaces `netns`. Veths first: their deletion is synchronous,
// whereas a namespace's own teardown (which would take its veth with it) is deferred by the kernel.
void delete_veths_then_netns(const std::vector<std::string>& veths, const std::vector<std::string>& netns,
                             OrphanSweep& sweep) {
    std::optional<RtNetlink> nl;
    for (const auto& name : veths) {
        if (!nl) {
            auto opened = RtNetlink::open();
            if (!opened.ok()) {
                sweep.errors.push_back(opened.error().message);
                break;
            }
            nl.emplace(std::move(*opened));
        }
        Status st = nl->delete_link(name);
        if (st.ok()) ++sweep.veths_removed;
        else if (st.error().code != ErrorCode::NotFound) sweep.errors.push_back(st.error().message);
    }
    for (const auto& name : netns) {
        if (auto st = remove_named_netns(name); st.ok()) ++sweep.netns_removed;
        else sweep.errors.push_back(st.error().message);
    }
}

}  // namespace

std::string NetworkManager::netns_name(const std::string& id) { return kNetnsPrefix + id; }

std::string NetworkManager::host_veth_name(const std::string& id) {
    return kHostVethPrefix + sha256_hex(id).substr(0, 12);
}

Status NetworkManager::validate_id(const std::string& id) {
    if (id.empty() || id.size() > 48) return make_error(ErrorCode::InvalidArgument, "sandbox id must be 1-48 characters");
    for (char c : id)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return make_error(ErrorCode::InvalidArgument, "sandbox id '" + id + "' may hold only a-z, 0-9 and '-'");
    return ok_status();
}

Result<std::unique_ptr<NetworkManager>> NetworkManager::create(const NetworkConfig& config) {
    std::shared_ptr<AddressPool> pool = TRY(AddressPool::create(config.pool));
    uint32_t dns = 0;
    if (config.dns_resolver.empty()) {
        dns = resolver_from_resolv_conf();
    } else if (config.dns_resolver != "none") {
        auto parsed = parse_ipv4(config.dns_resolver);
        if (!parsed.ok()) return make_error(ErrorCode::InvalidArgument, "dns resolver: " + parsed.error().message);
        dns = *parsed;
    }
    TRY(load_nft_ruleset(host_ruleset(pool->range(), config.host_table)));
    if (config.enable_host_forwarding) TRY(write_sysctl("/proc/sys/net/ipv4/ip_forward", "1"));
    return std::unique_ptr<NetworkManager>(new NetworkManager(config, std::move(pool), dns));
}

Status NetworkManager::remove_host_rules() {
    return load_nft_ruleset(host_ruleset_delete(m_config.host_table));
}

Result<std::unique_ptr<SandboxNetwork>> NetworkManager::setup(const std::string& id, const NetworkPolicy& policy) {
    auto start = Clock::now();
    TRY(validate_id(id));
    // Names are recorded in `net` only once they are ours: its destructor removes what they name.
    const std::string ns_name = netns_name(id), veth_name = host_veth_name(id);
    if (::if_nametoindex(veth_name.c_str()) != 0)
        return make_error(ErrorCode::Conflict, "interface " + veth_name + " for sandbox " + id + " already exists");
    std::unique_ptr<SandboxNetwork> net(new SandboxNetwork(id, m_pool));
    net->m_policy = policy;

    // 1. A /30 no host interface holds (one left by a crash keeps its address until swept).
    std::vector<uint32_t> host_addresses;
    for (const auto& [name, addr] : interface_addresses()) host_addresses.push_back(addr);
    net->m_subnet = TRY(m_pool->allocate([&](uint32_t a) {
        for (uint32_t h : host_addresses)
            if (h == a) return true;
        return false;
    }));
    net->m_has_slot = true;  // from here on the destructor undoes whatever was made

    // 2-4 in one thread that enters the new namespace and stays there: netlink sockets act on
    // the namespace they were opened in, so the host's is opened here first, the namespace's in
    // the thread. No process is spawned (each spawn costs milliseconds on a loaded host).
    const Subnet30& s = net->m_subnet;
    UniqueFd host_ns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!host_ns) return errno_error("open the host network namespace");
    auto host_nl = TRY(RtNetlink::open());
    SandboxRulesInput rules{policy, m_pool->range(), host_addresses, m_dns, m_config.egress};
    net->m_ruleset_hosts = host_addresses;
    net->m_egress = m_config.egress;
    net->m_dns = m_dns;
    std::string ruleset = sandbox_ruleset(rules);
    net->m_netns_fd = TRY(create_named_netns(ns_name, [&]() -> Status {
        TRY(write_optional_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1"));
        TRY(write_optional_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1"));
        TRY(write_sysctl("/proc/sys/net/ipv4/ip_forward", "1"));
        net->m_tap = TRY(open_tap());
        net->m_timings.netns_ms = ms_since(start);
        auto nl = TRY(RtNetlink::open());
        // The veth made inside, its host end created straight in the host namespace.
        TRY(nl.create_veth(kNetnsVethName, veth_name, host_ns.get()));
        net->m_veth = veth_name;  // ours from here: the destructor deletes it
        TRY(host_nl.add_address(veth_name, s.host_address(), 30));
        TRY(host_nl.link_up(veth_name, "", "kiln-sandbox-" + id));
        net->m_timings.veth_ms = ms_since(start);
        TRY(nl.link_up("lo"));
        TRY(nl.add_address(kTapName, TRY(parse_ipv4(kGatewayAddress)), kGuestPrefix));
        TRY(nl.link_up(kTapName, kGatewayMac));
        TRY(nl.add_address(kNetnsVethName, s.netns_address(), 30));
        TRY(nl.link_up(kNetnsVethName));
        TRY(nl.add_default_route(s.host_address()));
        net->m_timings.links_ms = ms_since(start);
        return load_nft_ruleset(ruleset);
    }));
    net->m_netns = ns_name;
    net->m_timings.ready_ms = ms_since(start);
    return net;
}

Result<std::unique_ptr<SandboxNetwork>> NetworkManager::setup_spare(const std::string& spare_id) {
    {
        // Held before the namespace exists, so a concurrent cleanup_orphans never sees it unheld.
        std::lock_guard lock(m_spares->mutex);
        if (!m_spares->ids.insert(spare_id).second)
            return make_error(ErrorCode::Conflict, "spare network " + spare_id + " already exists");
    }
    auto net = setup(spare_id, NetworkPolicy{});
    if (!net.ok()) {
        std::lock_guard lock(m_spares->mutex);
        m_spares->ids.erase(spare_id);
        return net;
    }
    (*net)->m_spare_hold = m_spares;
    (*net)->m_spare_id = spare_id;
    return net;
}

Result<std::unique_ptr<SandboxNetwork>> NetworkManager::adopt(const std::string& id) {
    TRY(validate_id(id));
    std::unique_ptr<SandboxNetwork> net(new SandboxNetwork(id, m_pool));
    net->m_netns = netns_name(id);
    net->m_veth = host_veth_name(id);
    net->m_netns_fd = TRY(open_named_netns(net->m_netns));
    for (const auto& [name, addr] : interface_addresses()) {
        if (name != net->m_veth) continue;
        if (auto slot = m_pool->slot_of(addr); slot && m_pool->subnet(*slot).host_address() == addr) {
            if (!m_pool->claim(*slot)) return make_error(ErrorCode::Conflict, "the /30 of sandbox " + id + " is already in use");
            net->m_subnet = m_pool->subnet(*slot);
            net->m_has_slot = true;
        }
    }
    if (!net->m_has_slot) {
        net->m_destroyed = true;  // nothing of ours to undo: the caller sweeps it as an orphan
        return make_error(ErrorCode::NotFound, "sandbox " + id + " has a namespace but no addressed veth " + net->m_veth);
    }
    return net;
}

OrphanSweep NetworkManager::cleanup_orphans(const std::set<std::string>& live_ids) {
    std::set<std::string> live = live_ids;
    {
        std::lock_guard lock(m_spares->mutex);
        live.insert(m_spares->ids.begin(), m_spares->ids.end());
    }
    std::set<std::string> live_netns, live_veths;
    for (const auto& id : live) {
        live_netns.insert(netns_name(id));
        live_veths.insert(host_veth_name(id));
    }
    std::vector<std::string> veths, netns;
    struct if_nameindex* names = ::if_nameindex();
    for (auto* n = names; n && n->if_name; ++n) {
        std::string name = n->if_name;
        if (name.rfind(kHostVethPrefix, 0) == 0 && !live_veths.count(name)) veths.push_back(name);
    }
    if (names) ::if_freenameindex(names);
    for (auto& name : list_named_netns(kNetnsPrefix))
        if (!live_netns.count(name)) netns.push_back(std::move(name));
    OrphanSweep sweep;
    delete_veths_then_netns(veths, netns, sweep);
    return sweep;
}

OrphanSweep NetworkManager::cleanup_sandboxes(const std::vector<std::string>& sandbox_ids) {
    std::set<std::string> present;
    for (auto& name : list_named_netns(kNetnsPrefix)) present.insert(std::move(name));
    std::vector<std::string> veths, netns;
    for (const auto& id : sandbox_ids) {
        if (!validate_id(id).ok()) continue;
        if (std::string veth = host_veth_name(id); ::if_nametoindex(veth.c_str()) != 0) veths.push_back(veth);
        if (std::string name = netns_name(id); present.count(name)) netns.push_back(name);
    }
    OrphanSweep sweep;
    delete_veths_then_netns(veths, netns, sweep);
    return sweep;
}

SandboxNetwork::~SandboxNetwork() { (void)destroy(); }

vm::NetDevice SandboxNetwork::nic() const { return vm::NetDevice{m_tap.get(), kGuestMac}; }

Status SandboxNetwork::run_inside(const std::function<Status()>& fn) const {
    if (!m_netns_fd) return make_error(ErrorCode::NotFound, "sandbox network " + m_id + " is gone");
    return run_in_netns(m_netns_fd.get(), fn);
}

void SandboxNetwork::release_spare_hold() {
    if (!m_spare_hold) return;
    std::lock_guard lock(m_spare_hold->mutex);
    m_spare_hold->ids.erase(m_spare_id);
    m_spare_hold.reset();
}

Status SandboxNetwork::assign(const std::string& id, const NetworkPolicy& policy) {
    TRY(NetworkManager::validate_id(id));
    if (!m_spare_hold) return make_error(ErrorCode::Conflict, "network " + m_id + " is not an unassigned spare network");
    if (m_destroyed || !m_netns_fd) return make_error(ErrorCode::NotFound, "spare network " + m_id + " is gone");
    const std::string veth = NetworkManager::host_veth_name(id), ns = NetworkManager::netns_name(id);
    // 1. The policy: its accepts appended to the spare's table, which was loaded with policy none
    //    and so let nothing out until now (additions only: see sandbox_policy_additions).
    std::vector<uint32_t> new_hosts;
    for (const auto& [name, addr] : interface_addresses())
        if (std::find(m_ruleset_hosts.begin(), m_ruleset_hosts.end(), addr) == m_ruleset_hosts.end()) new_hosts.push_back(addr);
    std::string additions = sandbox_policy_additions(policy, PolicyContext{m_egress, m_dns}, new_hosts);
    if (!additions.empty()) TRY(run_in_netns(m_netns_fd.get(), [&] { return load_nft_ruleset(additions); }));
    m_policy = policy;
    // 2. The names, each recorded as soon as it is the sandbox's, so destroy() removes what exists.
    //    A crash in between leaves names the reconcile sweeps either way: the spare's by their
    //    prefix, the sandbox's by its record (written before its create took the spare).
    m_id = id;
    auto nl = TRY(RtNetlink::open());
    TRY(nl.rename_link(m_veth, veth, "kiln-sandbox-" + id));
    m_veth = veth;
    TRY(rename_named_netns(m_netns, ns));
    m_netns = ns;
    release_spare_hold();  // a sandbox's network now: its owner keeps it out of any sweep
    return ok_status();
}

Status SandboxNetwork::destroy() {
    release_spare_hold();
    if (m_destroyed) return ok_status();
    m_destroyed = true;
    Status first = ok_status();
    m_tap.reset();
    // The veth explicitly: deleting it is synchronous, while the namespace's own teardown (which
    // would take the pair with it) is deferred by the kernel.
    if (!m_veth.empty()) {
        auto nl = RtNetlink::open();
        Status st = nl.ok() ? nl->delete_link(m_veth) : Status(nl.error());
        if (!st.ok() && st.error().code != ErrorCode::NotFound && first.ok()) first = st;
    }
    m_netns_fd.reset();
    if (!m_netns.empty()) {
        Status st = remove_named_netns(m_netns);
        if (!st.ok() && first.ok()) first = st;
    }
    if (m_has_slot) m_pool->release(m_subnet.slot);
    m_has_slot = false;
    return first;
}

}  // namespace kiln::daemon::net
