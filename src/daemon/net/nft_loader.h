// Loads an nftables ruleset in-process (libnftables) into the calling thread's network namespace.
#pragma once

#include <string>

#include "base/result.h"

namespace kiln::daemon::net {

// One atomic nftables transaction from `ruleset` (nft -f syntax). The netlink socket is opened
// here, so the ruleset lands in the namespace of the calling thread. Calls are serialized:
// libnftables keeps process-wide state. Errors carry nft's own message.
Status load_nft_ruleset(const std::string& ruleset);

}  // namespace kiln::daemon::net
