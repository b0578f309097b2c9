// Secrets read from files that only their owner can read: the checks every secret file gets.
#pragma once

#include <cstddef>
#include <string>

#include "base/result.h"

namespace kiln {

// The contents of the secret file at `path`, without one trailing newline ("\n" or "\r\n": an
// editor's, or `echo`'s). Refused, with a message naming the path and what to do:
//  - not a regular file (a FIFO is opened without blocking and refused too);
//  - owned by anyone but root or this process's effective uid (permission_denied);
//  - any group or other permission bit set, e.g. 0640 or 0644 (permission_denied): a secret
//    others can read is no secret, and one others can write is not ours;
//  - empty, or larger than `max_bytes` (invalid_argument / too_large).
// The checks are made on the opened file (fstat), so a rename in between cannot slip past them.
// The value itself never appears in an error.
Result<std::string> read_secret_file(const std::string& path, size_t max_bytes = 64 * 1024);

// The same owner check for a folder of secret files, and no group or other *write* bit (whoever
// can write the folder can add or replace secrets in it).
Status check_secret_dir(const std::string& path);

}  // namespace kiln
