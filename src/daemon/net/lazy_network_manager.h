// LazyNetworkManager: kilnd's one NetworkManager, made on the first sandbox that needs a NIC.
// Making it installs the host's `ip kiln` nftables table and turns on IPv4 forwarding; a kilnd
// whose users never ask for a network leaves the host's networking as it found it.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "base/result.h"
#include "daemon/net/sandbox_network.h"

namespace kiln::daemon::net {

class LazyNetworkManager {
public:
    explicit LazyNetworkManager(NetworkConfig config) : m_config(std::move(config)) {}

    // The manager, made now if it is not yet. A host that cannot (no CAP_NET_ADMIN, no nftables,
    // a bad pool) gets `unavailable` naming why; the next call tries again.
    Result<NetworkManager*> get();
    // get(), then setup(): the network of one sandbox (or a template bake).
    Result<std::unique_ptr<SandboxNetwork>> setup(const std::string& id, const NetworkPolicy& policy);

private:
    const NetworkConfig m_config;
    std::mutex m_mutex;
    std::unique_ptr<NetworkManager> m_manager;
};

}  // namespace kiln::daemon::net
