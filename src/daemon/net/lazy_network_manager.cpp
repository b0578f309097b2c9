// LazyNetworkManager (see lazy_network_manager.h).
#include "daemon/net/lazy_network_manager.h"

namespace kiln::daemon::net {

Result<NetworkManager*> LazyNetworkManager::get() {
    std::lock_guard lock(m_mutex);
    if (m_manager) return m_manager.get();
    auto made = NetworkManager::create(m_config);
    if (!made.ok())
        return make_error(ErrorCode::Unavailable, "sandbox networking is not available on this host: " + made.error().message);
    m_manager = std::move(*made);
    return m_manager.get();
}

Result<std::unique_ptr<SandboxNetwork>> LazyNetworkManager::setup(const std::string& id, const NetworkPolicy& policy) {
    NetworkManager* manager = TRY(get());
    return manager->setup(id, policy);
}

}  // namespace kiln::daemon::net
