// The sandbox /30 pool: slot arithmetic and bookkeeping.
#include "daemon/net/address_pool.h"

namespace kiln::daemon::net {

Result<std::unique_ptr<AddressPool>> AddressPool::create(const std::string& cidr) {
    auto range = parse_cidr(cidr);
    if (!range.ok()) return make_error(ErrorCode::InvalidArgument, "address pool: " + range.error().message);
    if (range->prefix < 8 || range->prefix > 28)
        return make_error(ErrorCode::InvalidArgument, "address pool " + cidr + ": the prefix must be /8 to /28");
    return std::unique_ptr<AddressPool>(new AddressPool(*range, uint32_t(1) << (32 - range->prefix - 2)));
}

bool AddressPool::claim(uint32_t slot) {
    std::lock_guard lock(m_mutex);
    if (slot >= m_slots) return false;
    return m_used.insert(slot).second;
}

void AddressPool::release(uint32_t slot) {
    std::lock_guard lock(m_mutex);
    m_used.erase(slot);
}

std::optional<uint32_t> AddressPool::slot_of(uint32_t address) const {
    uint32_t offset = address - m_range.network;
    if (address < m_range.network || offset / 4 >= m_slots) return std::nullopt;
    return offset / 4;
}

std::string AddressPool::range_text() const {
    return format_ipv4(m_range.network) + "/" + std::to_string(m_range.prefix);
}

size_t AddressPool::used() const {
    std::lock_guard lock(m_mutex);
    return m_used.size();
}

}  // namespace kiln::daemon::net
