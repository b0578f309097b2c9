// HMAC-SHA256 signatures of forwarded requests; see fleet_signature.h.
#include "daemon/fleet/fleet_signature.h"

#include <openssl/crypto.h>

#include <charconv>

#include "base/sha256.h"

namespace kiln::daemon::fleet {
namespace {

Error refused(const std::string& why) { return make_error(ErrorCode::Unauthorized, "fleet request refused: " + why); }

std::optional<int64_t> parse_int64(const std::string& text) {
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
    return value;
}

}  // namespace

std::string fleet_signature(std::string_view secret, const FleetClaim& claim, std::string_view method,
                            std::string_view target) {
    // Fields joined by newlines, none of which may hold one (host names and methods are checked,
    // targets come off a request line): no two different claims give the same message.
    std::string message = "kiln-fleet-v1\n" + std::to_string(claim.time_ms) + "\n" + claim.host + "\n" +
                          std::string(method) + "\n" + std::string(target) + "\n" + std::to_string(claim.token_id) + "\n" +
                          claim.body_sha256;
    return hmac_sha256_hex(secret, message);
}

Result<FleetClaim> verify_fleet_request(std::string_view secret, const FleetHeaders& h, std::string_view method,
                                        std::string_view target, int64_t now_ms) {
    if (secret.empty()) return refused("this host has no fleet_secret");
    if (!h.host || !h.time || !h.token || !h.body || !h.signature) return refused("a fleet header is missing");
    if (h.body->size() != 64 || h.body->find_first_not_of("0123456789abcdef") != std::string::npos)
        return refused("bad body hash header");
    if (h.host->empty() || h.host->size() > 64 || h.host->find('\n') != std::string::npos)
        return refused("bad host header");
    auto time = parse_int64(*h.time);
    auto token = parse_int64(*h.token);
    if (!time || !token || *token <= 0) return refused("bad time or token header");
    if (*time < now_ms - kFleetClockWindowMs || *time > now_ms + kFleetClockWindowMs)
        return refused("the request's time is outside the clock window (are the hosts' clocks in sync?)");
    if (target.find('\n') != std::string_view::npos || method.find('\n') != std::string_view::npos)
        return refused("bad request line");
    FleetClaim claim{*h.host, *time, *token, *h.body};
    const std::string expected = fleet_signature(secret, claim, method, target);
    if (expected.empty() || h.signature->size() != expected.size() ||
        CRYPTO_memcmp(expected.data(), h.signature->data(), expected.size()) != 0)
        return refused("bad signature");
    return claim;
}

}  // namespace kiln::daemon::fleet
