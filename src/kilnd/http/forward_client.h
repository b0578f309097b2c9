// The client side of the fleet's internal API (docs/fleet.md): one request sent on to the host
// that owns it, signed with the fleet secret and naming the caller's token id, and its answer
// passed back: a small one whole, a stream (exec, downloads, tars) chunk by chunk as it arrives,
// so that nothing long or large is held here.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

#include "kilnd/http/http_message.h"

namespace kiln::daemon::http {

struct ForwardTarget {
    std::string host;  // its name, for errors and the log
    std::string url;   // its advertise_url: http://host:port
};

// Sends `req` (authenticated: req.caller set) to `to` and puts the answer in `res`. The owner
// unreachable (refused, no route, connect timeout) or failing before its answer's head: 503
// naming the host. The owner failing mid-stream: the stream ends short, as the owner's own would.
void forward_request(const ForwardTarget& to, const std::string& self_host, const std::string& fleet_secret,
                     const Request& req, Response& res);

// The SHA-256 (lowercase hex) of a file a host sends another, computed by the sender.
inline constexpr const char* kSha256Header = "X-Kiln-Sha256";

// What fetch_file wrote.
struct FetchedFile {
    uint64_t size = 0;
    std::string sha256;            // lowercase hex of every byte received
    std::string announced_sha256;  // the sender's kSha256Header ("" without one)
};

// GETs `target` from `to` as a fleet request for token `token_id` and writes the answer's body to
// `path` (created 0600, not replaced: the caller gives a fresh path), runs of zeros as holes (a
// snapshot's memory file is mostly holes). Refused: a status other than 200, a body over
// `max_bytes`, a connection that ends short.
Result<FetchedFile> fetch_file(const ForwardTarget& to, const std::string& self_host, const std::string& fleet_secret,
                               int64_t token_id, const std::string& target, const std::string& path, uint64_t max_bytes);

}  // namespace kiln::daemon::http
