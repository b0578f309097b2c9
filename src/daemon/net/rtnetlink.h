// A minimal rtnetlink client: the few link, address and route operations a sandbox network needs,
// without spawning `ip` (a process spawn costs milliseconds on a loaded host; these cost microseconds).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kiln::daemon::net {

// One NETLINK_ROUTE socket. It acts on the network namespace of the thread that opened it, for
// its whole life, whichever thread uses it later. One request at a time (not thread-safe).
class RtNetlink {
public:
    static Result<RtNetlink> open();

    // A veth pair: `name` here, its peer `peer_name` created directly in the namespace `peer_netns_fd`.
    Status create_veth(const std::string& name, const std::string& peer_name, int peer_netns_fd);
    Status delete_link(const std::string& name);  // not_found if there is none
    // Sets the MAC (when not empty), the alias (when not empty) and brings the link up.
    Status link_up(const std::string& name, const std::string& mac = {}, const std::string& alias = {});
    // Renames a link and sets its alias, keeping its addresses; an up link is renamed in place
    // where the kernel allows it (6.2 and later), else taken down for the rename and brought back up.
    Status rename_link(const std::string& name, const std::string& new_name, const std::string& alias);
    Status add_address(const std::string& name, uint32_t address, uint8_t prefix);
    Status add_default_route(uint32_t gateway);

private:
    explicit RtNetlink(UniqueFd fd) : m_fd(std::move(fd)) {}
    Status request(void* message, size_t length, const std::string& what);
    Result<int> index_of(const std::string& name);
    Status set_link(int index, const std::string& new_name, const std::string& alias, std::optional<bool> up);

    UniqueFd m_fd;
    uint32_t m_seq = 0;
};

}  // namespace kiln::daemon::net
