// The one-shot file operations: stat, list, mkdir and remove, each answered by a single Result.
#pragma once

#include <sys/stat.h>

#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "proto/messages.h"

namespace kiln::agent {

proto::FileInfo file_info_from_stat(const std::string& name, const struct stat& st);

// lstat: a symlink is reported as itself. FileInfo::name is the path asked for.
Result<proto::FileInfo> stat_path(const std::string& path);

// {"entries": [FileInfo...]} sorted by name; the path must be a directory (symlinks to one are followed).
Result<nlohmann::json> list_directory(const std::string& path);

// mkdir, or mkdir -p when request.parents (an existing directory is then fine). The new directory
// gets exactly request.mode; folders created on the way get 0755.
Status make_directory(const proto::MkdirRequest& request);

// Creates every missing folder of `dir` with `mode` (mkdir -p). Used before a file write.
Status make_parent_directories(const std::string& dir, mode_t mode);

// Removes a file, symlink or empty directory; with request.recursive a whole tree, never following symlinks.
Status remove_path(const proto::RemoveRequest& request);

}  // namespace kiln::agent
