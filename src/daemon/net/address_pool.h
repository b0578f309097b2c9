// AddressPool: hands out one /30 per sandbox from a configured IPv4 range (default 10.201.0.0/16).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "base/result.h"
#include "daemon/net/network_policy.h"

namespace kiln::daemon::net {

// One sandbox's /30 on the veth link: .1 is the host end, .2 the namespace end.
struct Subnet30 {
    uint32_t slot = 0;
    uint32_t network = 0;  // host byte order
    uint32_t host_address() const { return network + 1; }
    uint32_t netns_address() const { return network + 2; }
};

// Thread-safe. Slots are handed out round-robin, so a just-released /30 (and any conntrack state
// the host still holds for it) is the last to be reused.
class AddressPool {
public:
    // `cidr` must be a network of /8 to /28 (from 4 to 2^22 /30s).
    static Result<std::unique_ptr<AddressPool>> create(const std::string& cidr);

    // A free /30 for which `in_use(host_address)` is false (e.g. an address still on a host
    // interface left by a crash); resource_exhausted when none is left.
    template <typename InUse>
    Result<Subnet30> allocate(InUse in_use) {
        std::lock_guard lock(m_mutex);
        for (uint32_t i = 0; i < m_slots; ++i) {
            uint32_t slot = (m_next + i) % m_slots;
            if (m_used.count(slot)) continue;
            Subnet30 s = subnet(slot);
            if (in_use(s.host_address())) continue;
            m_used.insert(slot);
            m_next = (slot + 1) % m_slots;
            return s;
        }
        return make_error(ErrorCode::ResourceExhausted, "no free /30 left in the sandbox address pool " + range_text());
    }
    // Marks `slot` used (a sandbox that survived a kilnd restart); false if it already was.
    bool claim(uint32_t slot);
    void release(uint32_t slot);
    // The slot whose /30 holds `address`, if it is in this pool.
    std::optional<uint32_t> slot_of(uint32_t address) const;
    Subnet30 subnet(uint32_t slot) const { return {slot, m_range.network + slot * 4}; }
    const AllowRule& range() const { return m_range; }
    std::string range_text() const;
    size_t used() const;

private:
    AddressPool(AllowRule range, uint32_t slots) : m_range(range), m_slots(slots) {}
    AllowRule m_range;
    uint32_t m_slots;
    mutable std::mutex m_mutex;
    std::set<uint32_t> m_used;  // guarded by m_mutex
    uint32_t m_next = 0;        // guarded by m_mutex
};

}  // namespace kiln::daemon::net
