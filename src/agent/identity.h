// Identity renewal after a boot, restore or fork: fresh entropy, wall clock, hostname, empty ARP cache.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "proto/messages.h"

namespace kiln::agent {

// Applies an init request to the guest kernel:
//   1. adds the host's entropy to the input pool (RNDADDENTROPY) and reseeds the CRNG (RNDRESEEDCRNG),
//      so clones of one snapshot never share random output;
//   2. sets CLOCK_REALTIME to time_unix_ns (when non-zero);
//   3. sets the hostname (when non-empty);
//   4. when flush_arp, deletes every entry of /proc/net/arp.
// Any failure is returned and the agent must stay not ready.
Status renew_identity(const proto::InitRequest& request);

// The entries of /proc/net/arp (after its header line): IP address and device of each.
struct ArpEntry {
    std::string ip;
    std::string device;
};
std::vector<ArpEntry> parse_arp_table(std::string_view text);

// Decodes the request's entropy_hex (already validated as even-length hex).
std::string decode_hex(const std::string& hex);

}  // namespace kiln::agent
