// SHA-256 of strings and files (OpenSSL), as lowercase hex.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace kiln {

std::string sha256_hex(const std::string& data);
// Streams the file; `max_bytes` guards against hashing something unexpectedly huge.
Result<std::string> sha256_file_hex(const std::string& path, uint64_t max_bytes = UINT64_MAX);

// HMAC-SHA256 of `message` under `key`: the raw 32 bytes into `out` (false only if OpenSSL itself
// fails), or as lowercase hex ("" if it fails).
bool hmac_sha256(std::string_view key, std::string_view message, unsigned char out[32]);
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

}  // namespace kiln
