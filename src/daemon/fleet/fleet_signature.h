// The internal API between the hosts of a fleet (docs/fleet.md): a host that forwards a request
// signs it with the fleet secret, and names the caller's token by id, never by the token itself
// (which the forwarding host checked). The signature is HMAC-SHA256 over the time, the sending
// host, the method, the request target, the token id and the body's SHA-256, so that a captured
// header cannot be moved to another request, another caller or another body, nor, after the clock
// window, replayed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace kiln::daemon::fleet {

// The headers of a forwarded request. A request carrying any of them is a fleet request: it is
// refused (401) unless all are present and the signature verifies.
inline constexpr const char* kFleetHostHeader = "X-Kiln-Fleet-Host";
inline constexpr const char* kFleetTimeHeader = "X-Kiln-Fleet-Time";    // unix ms
inline constexpr const char* kFleetTokenHeader = "X-Kiln-Fleet-Token";  // the caller's token id
inline constexpr const char* kFleetBodyHeader = "X-Kiln-Fleet-Body-Sha256";  // 64 hex
inline constexpr const char* kFleetSignatureHeader = "X-Kiln-Fleet-Signature";  // 64 hex
inline constexpr const char* kFleetHeaders[] = {kFleetHostHeader, kFleetTimeHeader, kFleetTokenHeader, kFleetBodyHeader,
                                                kFleetSignatureHeader};

// How far a forwarded request's time may be from the receiver's clock either way. Hosts of a
// fleet run NTP; 30 s covers their drift plus a slow network, and bounds a replay.
inline constexpr int64_t kFleetClockWindowMs = 30'000;

struct FleetClaim {
    std::string host;      // the sending host's name
    int64_t time_ms = 0;
    int64_t token_id = 0;  // whose request this is
    // Of the request's body, lowercase hex. The receiver verifies the headers before it reads the
    // body, and the body against this once it has (connection.cpp).
    std::string body_sha256;
};

// Lowercase hex HMAC-SHA256 of the claim and the request line under `secret`. `target` is the
// path and query exactly as sent on the request line.
std::string fleet_signature(std::string_view secret, const FleetClaim& claim, std::string_view method,
                            std::string_view target);

// The header values as received (nullopt: the header is missing).
struct FleetHeaders {
    std::optional<std::string> host, time, token, body, signature;
    bool any() const { return host || time || token || body || signature; }
};

// The claim, if every header is present and well-formed, the time is within the window of
// `now_ms`, and the signature matches (constant-time compare). Otherwise Unauthorized with a
// reason for kilnd's log (the client sees it too: it tells nothing about the secret). An empty
// secret verifies nothing: a host without one accepts no forwarded request.
Result<FleetClaim> verify_fleet_request(std::string_view secret, const FleetHeaders& headers, std::string_view method,
                                        std::string_view target, int64_t now_ms);

}  // namespace kiln::daemon::fleet
