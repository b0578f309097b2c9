// The addressing every sandbox shares: same guest address, gateway and MAC in each (one L2 per netns).
#pragma once

#include <string>

namespace kiln::daemon::net {

// Inside each sandbox's own network namespace: the tap holds the gateway, the guest's eth0 the
// guest address. Every sandbox uses the same pair, so a snapshot or a fork needs no re-addressing;
// they never meet, because each tap sits alone in its own namespace.
inline constexpr const char* kGuestAddress = "172.30.0.2";
inline constexpr const char* kGatewayAddress = "172.30.0.1";
inline constexpr int kGuestPrefix = 30;
// The guest's MAC: the same in every sandbox for the same reason (locally administered, 52:54:00
// is QEMU's prefix). The gateway side (the tap) gets a kernel-chosen MAC per namespace.
inline constexpr const char* kGuestMac = "52:54:00:6b:69:6c";
// Names inside the sandbox's namespace (interface names are per namespace).
inline constexpr const char* kTapName = "tap0";
inline constexpr const char* kNetnsVethName = "veth0";
// Host-side prefixes, matched by wildcard in the host's `kiln` nftables table and by the orphan sweep.
inline constexpr const char* kNetnsPrefix = "kiln-";
inline constexpr const char* kHostVethPrefix = "kv-";
inline constexpr const char* kNetnsDir = "/run/netns";

// The shell the template bake runs in the guest (busybox ip) so that eth0 is up, addressed and
// routed, and DNS points at the gateway (where the sandbox's namespace forwards it to the
// configured resolver when the policy allows), before the template's snapshot is taken.
inline std::string guest_setup_command() {
    return std::string("ip link set lo up && ip link set eth0 up && ip addr add ") + kGuestAddress + "/" +
           std::to_string(kGuestPrefix) + " dev eth0 && ip route add default via " + kGatewayAddress +
           " && echo 'nameserver " + kGatewayAddress + "' > /etc/resolv.conf";
}

}  // namespace kiln::daemon::net
