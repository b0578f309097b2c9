// Maps errno values from file and exec syscalls to the agent's stable error codes, with messages naming the path.
#pragma once

#include <string>

#include "base/result.h"

namespace kiln::agent {

// The agent error code for an errno: ENOENT/ENOTDIR -> not_found, EACCES/EPERM -> permission_denied,
// EEXIST -> exists, EISDIR -> invalid_argument, anything else -> io_error.
ErrorCode errno_code(int err);

// "cannot <what> '<path>': <strerror>" with the code from errno_code().
Error path_error(const std::string& what, const std::string& path, int err);

}  // namespace kiln::agent
