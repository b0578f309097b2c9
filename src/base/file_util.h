// Whole-file reads and writes, recursive mkdir and removal: the small file chores every module needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/result.h"

namespace kiln {

// Reads a whole file; fails with "too_large" when it holds more than `max_size` bytes.
Result<std::string> read_file(const std::string& path, size_t max_size = 64 * 1024 * 1024);
// The rest of an open fd, at most max_size bytes (too_large beyond); `name` is for errors.
Result<std::string> read_fd(int fd, size_t max_size, const std::string& name);
// Reads at most the last `max_bytes` of a file (for log tails in error messages).
Result<std::string> read_file_tail(const std::string& path, size_t max_bytes);
// Writes `content` to `path` (created with `mode`, truncated if it exists).
Status write_file(const std::string& path, const std::string& content, unsigned mode = 0644);
// Writes through a temporary file in the same folder and rename(2)s it over `path`.
Status write_file_atomic(const std::string& path, const std::string& content, unsigned mode = 0644);
// mkdir -p.
Status make_dirs(const std::string& path, unsigned mode = 0755);
// rm -rf that never follows symlinks; a missing path is not an error.
Status remove_tree(const std::string& path);
bool path_exists(const std::string& path);
// Bytes allocated on disk for `path`, a file or a tree (symlinks not followed, holes not
// counted; a folder's own block neither); 0 when it is missing. What a `du` would say, for retention caps and logs.
uint64_t allocated_bytes(const std::string& path);
// The last `max_lines` lines of `text`.
std::string last_lines(const std::string& text, size_t max_lines);

}  // namespace kiln
