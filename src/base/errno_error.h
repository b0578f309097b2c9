// Turns errno into a kiln::Error with context, so every syscall failure names what was attempted.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

#include "base/result.h"

namespace kiln {

inline Error errno_error(const std::string& what, int err = errno) {
    return make_error(ErrorCode::IoError, what + ": " + std::strerror(err));
}

}  // namespace kiln
