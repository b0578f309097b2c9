// SpareNetworks (see spare_networks.h).
#include "daemon/net/spare_networks.h"

#include "base/json_log.h"
#include "base/random.h"
#include "base/sha256.h"

namespace kiln::daemon::net {
namespace {

// A spare's NIC as the vm layer sees it; the network inside is this file's to take back.
class SpareNetworkNic final : public vm::SpareNic {
public:
    explicit SpareNetworkNic(std::unique_ptr<SandboxNetwork> network) : m_network(std::move(network)) {}
    vm::NetDevice device() const override { return m_network->nic(); }
    std::unique_ptr<SandboxNetwork> take() { return std::move(m_network); }

private:
    std::unique_ptr<SandboxNetwork> m_network;  // destroyed with this object unless taken
};

}  // namespace

std::string local_network_prefix(const std::string& kind, const std::string& data_dir) {
    return kind + "-" + sha256_hex(data_dir).substr(0, 6) + "-";
}

std::string spare_network_prefix(const std::string& data_dir) { return local_network_prefix("spare", data_dir); }

vm::SpareNicSource SpareNetworks::source() {
    return [this]() -> Result<std::unique_ptr<vm::SpareNic>> {
        NetworkManager* manager = TRY(m_networks.get());
        std::string id = m_prefix + TRY(random_hex(5));
        auto made = manager->setup_spare(id);
        if (!made.ok()) {
            log::warn("spare network not made", {{"network", id}, {"error", made.error().to_string()}});
            return std::move(made).error();
        }
        log::info("spare network made", {{"network", id}, {"ms", (*made)->timings().ready_ms}});
        return std::unique_ptr<vm::SpareNic>(std::make_unique<SpareNetworkNic>(std::move(*made)));
    };
}

Result<std::unique_ptr<SandboxNetwork>> SpareNetworks::claim(std::unique_ptr<vm::SpareNic> nic, const std::string& sandbox_id,
                                                            const NetworkPolicy& policy) {
    auto* ours = dynamic_cast<SpareNetworkNic*>(nic.get());
    if (!ours) return make_error(ErrorCode::Internal, "a spare's NIC was not made by SpareNetworks");
    std::unique_ptr<SandboxNetwork> network = ours->take();
    TRY(network->assign(sandbox_id, policy));  // on failure `network` is destroyed on the way out
    return network;
}

}  // namespace kiln::daemon::net
