// X-Hub-Signature-256: HMAC-SHA256 of the raw webhook body with the shared secret, checked in constant time.
#pragma once

#include <string>
#include <string_view>

namespace kiln::ci::github {

// "sha256=<64 lowercase hex>" for `body` under `secret`.
std::string signature_header(std::string_view secret, std::string_view body);

// True only when `header` is exactly "sha256=<hex>" and the HMAC matches (CRYPTO_memcmp).
// An empty secret never verifies: an unconfigured webhook accepts nothing.
bool verify_signature(std::string_view secret, std::string_view body, std::string_view header);

}  // namespace kiln::ci::github
