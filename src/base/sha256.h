// SHA-256 of strings and files (OpenSSL), as lowercase hex.
#pragma once

#include <string>

#include "base/result.h"

namespace kiln {

std::string sha256_hex(const std::string& data);
// Streams the file; `max_bytes` guards against hashing something unexpectedly huge.
Result<std::string> sha256_file_hex(const std::string& path, uint64_t max_bytes = UINT64_MAX);

}  // namespace kiln
