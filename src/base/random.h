// Host randomness from getrandom(2): raw bytes, hex strings and short ids.
#pragma once

#include <cstddef>
#include <string>

#include "base/result.h"

namespace kiln {

Result<std::string> random_bytes(size_t count);
// 2*count lowercase hex digits from `count` random bytes.
Result<std::string> random_hex(size_t count);
std::string to_hex(const std::string& bytes);

}  // namespace kiln
