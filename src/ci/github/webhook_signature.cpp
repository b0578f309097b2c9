// HMAC-SHA256 webhook signatures with OpenSSL (see webhook_signature.h).
#include "ci/github/webhook_signature.h"

#include <openssl/crypto.h>

#include <cctype>

#include "base/sha256.h"

namespace kiln::ci::github {
namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::string signature_header(std::string_view secret, std::string_view body) {
    std::string mac = hmac_sha256_hex(secret, body);
    return mac.empty() ? "" : "sha256=" + mac;
}

bool verify_signature(std::string_view secret, std::string_view body, std::string_view header) {
    static constexpr std::string_view kPrefix = "sha256=";
    if (secret.empty() || header.size() != kPrefix.size() + 64 || header.substr(0, kPrefix.size()) != kPrefix) return false;
    // Decode the given MAC first (its length is public), then compare the bytes in constant time.
    unsigned char given[32];
    std::string_view hex = header.substr(kPrefix.size());
    for (size_t i = 0; i < 32; ++i) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        given[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    unsigned char expected[32];
    if (!hmac_sha256(secret, body, expected)) return false;
    return CRYPTO_memcmp(given, expected, sizeof expected) == 0;
}

}  // namespace kiln::ci::github
