// NetworkManager and SandboxNetwork: one sandbox's namespace, tap, veth, /30 and nftables, made and removed.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "daemon/net/address_pool.h"
#include "daemon/net/egress_options.h"
#include "daemon/net/network_policy.h"
#include "vm/qemu_command.h"

namespace kiln::daemon::net {

struct NetworkConfig {
    std::string pool = "10.201.0.0/16";  // one /30 per sandbox for its veth link
    // Where the gateway forwards the guest's DNS (udp/tcp 53), if the policy allows that address.
    // Empty: the first IPv4 nameserver in /etc/resolv.conf that is not loopback (a loopback
    // resolver is unreachable by design); "none": no DNS forwarding.
    std::string dns_resolver;
    // net.ipv4.ip_forward=1 on the host: without it nothing leaves any sandbox. The host table
    // forwards only sandbox traffic and replies to it (see docs/network.md).
    bool enable_host_forwarding = true;
    std::string host_table = "kiln";  // the host's nftables table (`ip` family); one per pool
    // What `open` may reach beyond the public internet, and every sandbox's connection limits.
    EgressOptions egress;
};

// Milliseconds from the start of setup().
struct NetworkSetupTimings {
    double netns_ms = 0;   // namespace bound, sysctls set, `nft` started, tap open
    double veth_ms = 0;    // veth pair made (rtnetlink), host end addressed and up
    double links_ms = 0;   // namespace side addressed and routed
    double ready_ms = 0;   // its nftables table loaded
};

struct OrphanSweep {
    int netns_removed = 0;
    int veths_removed = 0;
    std::vector<std::string> errors;  // what could not be removed, for the log
};

class SandboxNetwork;

// The ids of spare networks (NetworkManager::setup_spare) that are alive and not yet assigned to
// a sandbox: cleanup_orphans leaves them alone although no sandbox has their id.
struct HeldSpareIds {
    std::mutex mutex;
    std::set<std::string> ids;
};

// Thread-safe. Owns the host side: the `ip kiln` nftables table and the address pool.
// SandboxNetworks share the pool, so they may outlive the manager.
class NetworkManager {
public:
    // Validates the config, installs (replaces) the host table and enables forwarding.
    static Result<std::unique_ptr<NetworkManager>> create(const NetworkConfig& config);

    // Order, enforced here: 1. a /30 from the pool 2. namespace kiln-<id> with IPv6 off,
    // forwarding on and the tap opened inside 3. the veth pair, host end addressed and up
    // 4. namespace side addressed and routed, its nftables table loaded (policy included).
    // On failure everything made so far is removed.
    Result<std::unique_ptr<SandboxNetwork>> setup(const std::string& sandbox_id, const NetworkPolicy& policy);
    // A network made ahead for a spare QEMU (docs/network.md, "Spare networks"): as setup() with
    // policy none, so nothing leaves it until SandboxNetwork::assign() gives it a sandbox's id and
    // policy. Until then cleanup_orphans does not sweep it; after a crash it is an orphan like any.
    Result<std::unique_ptr<SandboxNetwork>> setup_spare(const std::string& spare_id);
    // Takes over the network of a sandbox that outlived a kilnd restart (its QEMU holds the tap):
    // not_found if its namespace is gone. The policy is the one its rules already hold.
    Result<std::unique_ptr<SandboxNetwork>> adopt(const std::string& sandbox_id);
    // Removes every kiln-* namespace and kv-* veth whose sandbox is not in `live_ids` and that is
    // not a spare network this manager holds (left by a crash of kilnd or QEMU). Their taps and nftables tables live in those namespaces and go
    // with them.
    OrphanSweep cleanup_orphans(const std::set<std::string>& live_ids);
    // Removes the namespace and host veth of exactly these sandboxes, where they still exist:
    // kilnd's reconcile passes the sandboxes of its own store that are no longer live, so other
    // users of kiln-* names on the host (another kilnd, tests) are left alone. Needs no manager.
    static OrphanSweep cleanup_sandboxes(const std::vector<std::string>& sandbox_ids);
    // Deletes the host table (tests). kilnd leaves it: it is harmless without sandbox veths.
    Status remove_host_rules();

    static std::string netns_name(const std::string& sandbox_id);
    // kv-<12 hex of SHA-256(id)>: interface names hold 15 characters, sandbox ids more.
    static std::string host_veth_name(const std::string& sandbox_id);
    static Status validate_id(const std::string& sandbox_id);

    const AddressPool& pool() const { return *m_pool; }
    uint32_t dns_resolver() const { return m_dns; }
    const NetworkConfig& config() const { return m_config; }

private:
    NetworkManager(NetworkConfig config, std::shared_ptr<AddressPool> pool, uint32_t dns)
        : m_config(std::move(config)), m_pool(std::move(pool)), m_dns(dns) {}
    NetworkConfig m_config;
    std::shared_ptr<AddressPool> m_pool;
    uint32_t m_dns;
    std::shared_ptr<HeldSpareIds> m_spares = std::make_shared<HeldSpareIds>();
};

// One sandbox's network. Destroying it (or destroy()) removes the veth pair, the namespace (with
// its tap and nftables table, once QEMU has closed the tap) and frees the /30. Owner-thread only.
class SandboxNetwork {
public:
    ~SandboxNetwork();
    SandboxNetwork(const SandboxNetwork&) = delete;
    SandboxNetwork& operator=(const SandboxNetwork&) = delete;

    // The NIC for QEMU: the tap fd (still owned here) and the guest's MAC.
    vm::NetDevice nic() const;
    int tap_fd() const { return m_tap.get(); }
    // Once QEMU has its copy of the tap fd, the namespace lives exactly as long as QEMU does.
    void close_tap() { m_tap.reset(); }

    const std::string& sandbox_id() const { return m_id; }
    const std::string& netns_name() const { return m_netns; }
    const std::string& host_veth() const { return m_veth; }
    const Subnet30& subnet() const { return m_subnet; }
    const NetworkPolicy& policy() const { return m_policy; }
    const NetworkSetupTimings& timings() const { return m_timings; }
    int netns_fd() const { return m_netns_fd.get(); }
    // Runs `fn` inside this sandbox's namespace (tests and diagnostics).
    Status run_inside(const std::function<Status()>& fn) const;

    // Makes a spare network (NetworkManager::setup_spare) sandbox `sandbox_id`'s, on the create
    // path: `policy`'s rules appended to its nftables table (loaded with policy none, so the spare
    // let nothing out), the host veth renamed kv-<hash of the id> and the namespace kiln-<id>: the
    // same rules and names as setup() would have made for that id. A network is assigned at most once: a sandbox's policy never reaches another
    // sandbox. On failure the caller destroys it (every name it has then is removed).
    Status assign(const std::string& sandbox_id, const NetworkPolicy& policy);

    // Idempotent; the first error is returned but every step is attempted.
    Status destroy();

private:
    friend class NetworkManager;
    SandboxNetwork(std::string id, std::shared_ptr<AddressPool> pool) : m_id(std::move(id)), m_pool(std::move(pool)) {}
    void release_spare_hold();

    std::string m_id;
    std::string m_netns;
    std::string m_veth;
    Subnet30 m_subnet;
    bool m_has_slot = false;
    NetworkPolicy m_policy;
    NetworkSetupTimings m_timings;
    std::shared_ptr<AddressPool> m_pool;
    std::vector<uint32_t> m_ruleset_hosts;       // the host addresses its nftables table drops
    EgressOptions m_egress;                      // its manager's, for the rules assign() appends
    uint32_t m_dns = 0;                          // the resolver its gateway forwards DNS to
    std::shared_ptr<HeldSpareIds> m_spare_hold;  // set while this is an unassigned spare network
    std::string m_spare_id;                      // its id in m_spare_hold
    UniqueFd m_netns_fd;
    UniqueFd m_tap;
    bool m_destroyed = false;
};

}  // namespace kiln::daemon::net
