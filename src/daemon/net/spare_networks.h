// SpareNetworks: the networks of spare QEMUs for snapshots taken with a NIC, made ahead and handed
// to the sandbox whose create takes the spare (docs/network.md, "Spare networks").
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "daemon/net/lazy_network_manager.h"
#include "daemon/net/network_policy.h"
#include "daemon/net/sandbox_network.h"
#include "vm/spare_pool.h"

namespace kiln::daemon::net {

// "spare-<6 hex of SHA-256(data_dir)>-": every spare network of the kilnd on `data_dir` has an id
// that starts so (its namespace is kiln-spare-..., its veth's alias kiln-sandbox-spare-...), so
// that kilnd's reconcile sweeps the spare networks a crash left and no other kilnd's.
std::string spare_network_prefix(const std::string& data_dir);
// The same for the networks with no record that a bake ("bake") or a snapshot's helper VM
// ("snap") makes for a moment: "<kind>-<6 hex of SHA-256(data_dir)>-", so that a kilnd's reconcile
// sweeps the ones its own crash left and never those of another kilnd on the same machine.
std::string local_network_prefix(const std::string& kind, const std::string& data_dir);

// Feeds the SparePool the NICs of spares and takes them back for sandboxes. Thread-safe; must
// outlive the pool's use of source() (kilnd declares it before the pool).
class SpareNetworks {
public:
    SpareNetworks(LazyNetworkManager& networks, const std::string& data_dir)
        : m_networks(networks), m_prefix(spare_network_prefix(data_dir)) {}

    // For SparePool::prepare: each call makes one network (NetworkManager::setup_spare: policy
    // none, nothing leaves it) with a fresh id, kept alive by the vm::SpareNic it returns.
    vm::SpareNicSource source();

    // The network of the NIC a restore took with its spare (`nic` came from source()), made
    // sandbox `sandbox_id`'s with `policy` (SandboxNetwork::assign). On failure the network's
    // names are removed at once (its namespace ends with the QEMU that holds its tap).
    static Result<std::unique_ptr<SandboxNetwork>> claim(std::unique_ptr<vm::SpareNic> nic, const std::string& sandbox_id,
                                                        const NetworkPolicy& policy);

private:
    LazyNetworkManager& m_networks;
    const std::string m_prefix;
};

}  // namespace kiln::daemon::net
