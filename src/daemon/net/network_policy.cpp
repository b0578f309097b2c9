// Parsing and validation of the sandbox network policy; every input here comes from an API client.
#include "daemon/net/network_policy.h"

#include <charconv>

namespace kiln::daemon::net {
namespace {

Error invalid(const std::string& message) { return make_error(ErrorCode::InvalidArgument, "network: " + message); }

// Quotes a client's text for an error message: printable ASCII only, bounded.
std::string shown(std::string_view text) {
    std::string out = "'";
    for (char c : text.substr(0, kMaxAllowRuleLength)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    if (text.size() > kMaxAllowRuleLength) out += "...";
    return out + "'";
}

// A decimal number with no sign, no leading zeros and at most `max`.
bool parse_decimal(std::string_view text, uint32_t max, uint32_t& out) {
    if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return false;
    uint32_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value > max) return false;
    out = value;
    return true;
}

uint32_t prefix_mask(uint8_t prefix) { return prefix == 0 ? 0 : ~uint32_t(0) << (32 - prefix); }

}  // namespace

const char* mode_name(NetworkMode mode) {
    switch (mode) {
        case NetworkMode::None: return "none";
        case NetworkMode::Allowlist: return "allowlist";
        case NetworkMode::Open: return "open";
    }
    return "none";
}

std::string format_ipv4(uint32_t a) {
    return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." + std::to_string((a >> 8) & 255) + "." +
           std::to_string(a & 255);
}

Result<uint32_t> parse_ipv4(std::string_view text) {
    uint32_t address = 0;
    size_t start = 0;
    for (int part = 0; part < 4; ++part) {
        size_t dot = part < 3 ? text.find('.', start) : text.size();
        if (dot == std::string_view::npos) return invalid(shown(text) + " is not an IPv4 address (A.B.C.D)");
        uint32_t byte;
        if (!parse_decimal(text.substr(start, dot - start), 255, byte))
            return invalid(shown(text) + " is not an IPv4 address (A.B.C.D, each part 0-255, no leading zeros)");
        address = address << 8 | byte;
        start = dot + 1;
    }
    return address;
}

Result<AllowRule> parse_cidr(std::string_view text) {
    AllowRule rule;
    size_t slash = text.find('/');
    rule.network = TRY(parse_ipv4(text.substr(0, slash)));
    if (slash != std::string_view::npos) {
        uint32_t prefix;
        if (!parse_decimal(text.substr(slash + 1), 32, prefix))
            return invalid(shown(text) + ": the prefix length must be 0-32");
        rule.prefix = static_cast<uint8_t>(prefix);
    }
    if (rule.network & ~prefix_mask(rule.prefix))
        return invalid(shown(text) + " has host bits set; did you mean " +
                       format_ipv4(rule.network & prefix_mask(rule.prefix)) + "/" + std::to_string(rule.prefix) + "?");
    return rule;
}

Result<AllowRule> parse_allow_rule(std::string_view text) {
    if (text.empty()) return invalid("an allow entry is empty");
    if (text.size() > kMaxAllowRuleLength)
        return invalid("an allow entry is longer than " + std::to_string(kMaxAllowRuleLength) + " characters");
    for (char c : text)
        if (!((c >= '0' && c <= '9') || c == '.' || c == '/' || c == ':')) {
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-')
                return invalid(shown(text) + ": host names are not supported, give an IPv4 address or CIDR "
                                              "(optionally with :port)");
            return invalid(shown(text) + " is not an IPv4 address or CIDR, optionally with :port");
        }
    size_t colon = text.find(':');
    AllowRule rule = TRY(parse_cidr(text.substr(0, colon)));
    if (colon != std::string_view::npos) {
        uint32_t port;
        if (!parse_decimal(text.substr(colon + 1), 65535, port) || port == 0)
            return invalid(shown(text) + ": the port must be 1-65535");
        rule.port = static_cast<uint16_t>(port);
    }
    return rule;
}

std::string AllowRule::to_string() const {
    std::string s = format_ipv4(network);
    if (prefix != 32) s += "/" + std::to_string(prefix);
    if (port) s += ":" + std::to_string(port);
    return s;
}

bool NetworkPolicy::allows(uint32_t address, uint16_t port) const {
    switch (mode) {
        case NetworkMode::None: return false;
        case NetworkMode::Open: return true;
        case NetworkMode::Allowlist:
            for (const AllowRule& rule : allow)
                if ((address & prefix_mask(rule.prefix)) == rule.network && (rule.port == 0 || rule.port == port))
                    return true;
            return false;
    }
    return false;
}

Result<NetworkPolicy> parse_network_policy(const nlohmann::json& value) {
    if (!value.is_object()) return invalid("must be an object {mode, allow}");
    NetworkPolicy policy;
    bool has_mode = false;
    for (auto it = value.begin(); it != value.end(); ++it) {
        if (it.key() == "mode") {
            if (!it->is_string()) return invalid("mode must be a string: none, allowlist or open");
            const std::string& mode = it->get_ref<const std::string&>();
            if (mode == "none") policy.mode = NetworkMode::None;
            else if (mode == "allowlist") policy.mode = NetworkMode::Allowlist;
            else if (mode == "open") policy.mode = NetworkMode::Open;
            else return invalid("mode " + shown(mode) + " is not one of none, allowlist, open");
            has_mode = true;
        } else if (it.key() == "allow") {
            if (!it->is_array()) return invalid("allow must be an array of strings");
            if (it->size() > kMaxAllowRules)
                return invalid("allow has " + std::to_string(it->size()) + " entries, at most " +
                               std::to_string(kMaxAllowRules) + " are accepted");
            for (const auto& entry : *it) {
                if (!entry.is_string()) return invalid("allow must be an array of strings");
                AllowRule rule = TRY(parse_allow_rule(entry.get_ref<const std::string&>()));
                bool duplicate = false;
                for (const auto& r : policy.allow) duplicate = duplicate || r == rule;
                if (!duplicate) policy.allow.push_back(rule);
            }
        } else {
            return invalid("unknown field " + shown(it.key()) + " (expected mode, allow)");
        }
    }
    if (!has_mode) return invalid("mode is required: none, allowlist or open");
    if (policy.mode != NetworkMode::Allowlist && value.contains("allow"))
        return invalid(std::string("allow is only meaningful with mode allowlist, not ") + mode_name(policy.mode));
    return policy;
}

Result<NetworkPolicy> parse_network_policy_text(std::string_view text) {
    // nlohmann throws on malformed input: caught here, at the module boundary.
    auto value = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) return invalid("not valid JSON");
    return parse_network_policy(value);
}

nlohmann::json to_json(const NetworkPolicy& policy) {
    nlohmann::json j = {{"mode", mode_name(policy.mode)}};
    if (policy.mode == NetworkMode::Allowlist) {
        j["allow"] = nlohmann::json::array();
        for (const auto& rule : policy.allow) j["allow"].push_back(rule.to_string());
    }
    return j;
}

}  // namespace kiln::daemon::net
