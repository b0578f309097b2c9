// NetworkPolicy: the API field `network: {mode: none|allowlist|open, allow: [...]}`, parsed and validated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace kiln::daemon::net {

// none: nothing leaves the sandbox. allowlist: only the listed destinations (DNS only when the
// resolver is one of them). open: anything except the host itself and other sandboxes.
enum class NetworkMode { None, Allowlist, Open };
const char* mode_name(NetworkMode mode);

// One allowlist entry: an IPv4 network (a single address is a /32) and optionally one port,
// which then opens TCP and UDP to that port only. Host bits beyond the prefix are refused.
struct AllowRule {
    uint32_t network = 0;  // host byte order
    uint8_t prefix = 32;
    uint16_t port = 0;  // 0: every port

    bool operator==(const AllowRule&) const = default;
    std::string to_string() const;  // the canonical form: "10.0.0.0/8", "192.0.2.7:443"
};

struct NetworkPolicy {
    NetworkMode mode = NetworkMode::None;
    std::vector<AllowRule> allow;  // only with mode allowlist

    bool operator==(const NetworkPolicy&) const = default;
    // True when `address:port` (tcp or udp) may be reached under this policy, before the fixed
    // drops (host, pool, link-local) that apply whatever the policy says.
    bool allows(uint32_t address, uint16_t port) const;
};

inline constexpr size_t kMaxAllowRules = 64;
inline constexpr size_t kMaxAllowRuleLength = 64;

// "A.B.C.D", "A.B.C.D/N", "A.B.C.D:P" or "A.B.C.D/N:P". Names are refused: a name resolved once
// at create time would be stale, and resolving it would itself be traffic the policy must allow.
Result<AllowRule> parse_allow_rule(std::string_view text);
// Strict dotted quad: four decimal parts 0-255, no leading zeros (no octal ambiguity).
Result<uint32_t> parse_ipv4(std::string_view text);
std::string format_ipv4(uint32_t address);
// "A.B.C.D/N" with no host bits set.
Result<AllowRule> parse_cidr(std::string_view text);

// The API object. Unknown keys, wrong types, `allow` outside mode allowlist, more than
// kMaxAllowRules entries: invalid_argument with a message that names the offending part.
Result<NetworkPolicy> parse_network_policy(const nlohmann::json& value);
// The same from JSON text (the fuzz target's entry); malformed JSON is invalid_argument too.
Result<NetworkPolicy> parse_network_policy_text(std::string_view text);
nlohmann::json to_json(const NetworkPolicy& policy);

}  // namespace kiln::daemon::net
