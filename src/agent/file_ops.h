// The one-shot file operations: stat, list, mkdir and remove, each answered by a single Result.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/user_lookup.h"
#include "base/result.h"
#include "proto/messages.h"

namespace kiln::agent {

// Owner and group that new files and folders get (chown), when a request names a user.
struct FileOwner {
    uid_t uid = 0;
    gid_t gid = 0;
};

// FileInfo of `st` (an lstat of `path`): owner and group named through `users`, a symlink's target read.
proto::FileInfo file_info_from_stat(const std::string& name, const std::string& path, const struct stat& st,
                                    const AccountNames& users);

// lstat: a symlink is reported as itself. FileInfo::name is the path asked for.
Result<proto::FileInfo> stat_path(const std::string& path);

// {"entries": [FileInfo...]} sorted by path, each with its full path; request.depth levels (1: the
// folder's own entries), never descending through symlinks. The path must be a directory (a
// symlink to one is followed).
Result<nlohmann::json> list_directory(const proto::ListRequest& request);

// The owner that `user` names (empty: none), or lookup_user's error (not_found "no such user 'NAME'").
Result<std::optional<FileOwner>> resolve_owner(const std::string& user);

// mkdir, or mkdir -p when request.parents (an existing directory is then fine). The new directory
// gets exactly request.mode; folders created on the way get 0755. With request.user, every folder
// created is chowned to that user.
Status make_directory(const proto::MkdirRequest& request);

// Creates every missing folder of `dir` with `mode` (mkdir -p), chowned to `owner` when given.
// Used before a file write.
Status make_parent_directories(const std::string& dir, mode_t mode, const std::optional<FileOwner>& owner = {});

// rename(2) of request.from onto request.to (a file replaces a file, a folder an empty folder).
Status move_path(const proto::MoveRequest& request);

// Removes a file, symlink or empty directory; with request.recursive a whole tree, never following symlinks.
Status remove_path(const proto::RemoveRequest& request);

}  // namespace kiln::agent
