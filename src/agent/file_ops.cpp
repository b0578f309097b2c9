// stat, list, mkdir and remove on the guest file system, with errno mapped to stable codes.
#include "agent/file_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "agent/errno_codes.h"
#include "base/unique_fd.h"

namespace kiln::agent {
namespace {

const char* file_type_name(mode_t mode) {
    if (S_ISREG(mode)) return "file";
    if (S_ISDIR(mode)) return "dir";
    if (S_ISLNK(mode)) return "symlink";
    return "other";
}

Error invalid(const std::string& message) { return make_error(ErrorCode::InvalidArgument, message); }

// Deeper trees than this are refused rather than risk running out of file descriptors.
constexpr size_t kMaxRemoveDepth = 512;

struct DirCloser {
    void operator()(DIR* d) const { closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

Status remove_tree(const std::string& root) {
    UniqueFd root_fd(open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root_fd) return path_error("open directory", root, errno);
    DIR* d = fdopendir(root_fd.get());
    if (!d) return path_error("read directory", root, errno);
    root_fd.release();

    struct Level {
        DirPtr dir;
        std::string name;  // the name of this directory inside its parent
        std::string path;  // for messages
    };
    std::vector<Level> stack;
    stack.push_back(Level{DirPtr(d), "", root});
    while (!stack.empty()) {
        Level& top = stack.back();
        errno = 0;
        struct dirent* entry = readdir(top.dir.get());
        if (!entry) {
            if (errno != 0) return path_error("read directory", top.path, errno);
            std::string name = std::move(top.name), path = std::move(top.path);
            stack.pop_back();
            int rc = stack.empty() ? rmdir(root.c_str()) : unlinkat(dirfd(stack.back().dir.get()), name.c_str(), AT_REMOVEDIR);
            if (rc != 0 && errno != ENOENT) return path_error("remove directory", path, errno);
            continue;
        }
        std::string name = entry->d_name;
        if (name == "." || name == "..") continue;
        int parent = dirfd(top.dir.get());
        std::string path = top.path + "/" + name;
        bool is_dir = entry->d_type == DT_DIR;
        if (entry->d_type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno == ENOENT) continue;
                return path_error("stat", path, errno);
            }
            is_dir = S_ISDIR(st.st_mode);
        }
        if (!is_dir) {
            if (unlinkat(parent, name.c_str(), 0) != 0 && errno != ENOENT) return path_error("remove", path, errno);
            continue;
        }
        if (stack.size() >= kMaxRemoveDepth)
            return make_error(ErrorCode::IoError, "cannot remove '" + root + "': the tree is deeper than " +
                                                         std::to_string(kMaxRemoveDepth) + " levels");
        UniqueFd fd(openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd) {
            if (errno == ENOENT) continue;
            return path_error("open directory", path, errno);
        }
        DIR* child = fdopendir(fd.get());
        if (!child) return path_error("read directory", path, errno);
        fd.release();
        stack.push_back(Level{DirPtr(child), name, path});
    }
    return ok_status();
}

// Joins a folder and a name without doubling the slash of "/".
std::string join_path(const std::string& dir, const std::string& name) {
    return !dir.empty() && dir.back() == '/' ? dir + name : dir + "/" + name;
}

// The target of the symlink `name` in `dir_fd` (AT_FDCWD: a path), as stored; empty when unreadable.
std::string read_link_at(int dir_fd, const std::string& name, const struct stat& st) {
    std::string target(std::max<size_t>(static_cast<size_t>(st.st_size), 1) + 1, '\0');
    for (int attempt = 0; attempt < 4 && target.size() <= proto::kMaxPathLength + 1; ++attempt) {
        ssize_t n = readlinkat(dir_fd, name.c_str(), target.data(), target.size());
        if (n < 0) return {};
        if (static_cast<size_t>(n) < target.size()) {
            target.resize(static_cast<size_t>(n));
            return target;
        }
        target.resize(target.size() * 2);  // changed since the lstat (or /proc-style size 0)
    }
    return {};
}

proto::FileInfo info_at(int dir_fd, const std::string& name, const std::string& path, const struct stat& st,
                        const AccountNames& users) {
    proto::FileInfo info = file_info_from_stat(name, path, st, users);
    if (S_ISLNK(st.st_mode)) info.symlink_target = read_link_at(dir_fd, dir_fd == AT_FDCWD ? path : name, st);
    return info;
}

struct ListWalk {
    const AccountNames& users;
    std::vector<proto::FileInfo> entries;
};

// Lists the open folder `fd` (`path`) into walk.entries, and `levels_left` levels below it.
Status list_level(ListWalk& walk, UniqueFd fd, const std::string& path, uint32_t levels_left) {
    DIR* raw = fdopendir(fd.get());
    if (!raw) return path_error("list", path, errno);
    fd.release();
    DirPtr dir(raw);
    std::vector<std::string> subdirs;
    for (;;) {
        errno = 0;
        struct dirent* entry = readdir(dir.get());
        if (!entry) {
            if (errno != 0) return path_error("list", path, errno);
            break;
        }
        std::string name = entry->d_name;
        if (name == "." || name == "..") continue;
        struct stat st;
        std::string entry_path = join_path(path, name);
        if (fstatat(dirfd(dir.get()), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;  // removed while we listed
            return path_error("stat", entry_path, errno);
        }
        walk.entries.push_back(info_at(dirfd(dir.get()), name, entry_path, st, walk.users));
        if (S_ISDIR(st.st_mode) && levels_left > 0) subdirs.push_back(name);
    }
    for (const auto& name : subdirs) {
        UniqueFd child(openat(dirfd(dir.get()), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!child) {
            if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP || errno == EACCES) continue;  // changed meanwhile
            return path_error("list", join_path(path, name), errno);
        }
        TRY(list_level(walk, std::move(child), join_path(path, name), levels_left - 1));
    }
    return ok_status();
}

Status chown_to(const std::string& path, const std::optional<FileOwner>& owner) {
    if (owner && lchown(path.c_str(), owner->uid, owner->gid) != 0) return path_error("change the owner of", path, errno);
    return ok_status();
}

}  // namespace

proto::FileInfo file_info_from_stat(const std::string& name, const std::string& path, const struct stat& st,
                                    const AccountNames& users) {
    proto::FileInfo info;
    info.name = name;
    info.path = path;
    info.owner = users.user_name(st.st_uid);
    info.group = users.group_name(st.st_gid);
    info.type = file_type_name(st.st_mode);
    info.size = static_cast<uint64_t>(st.st_size);
    info.mode = st.st_mode & 07777;
    info.uid = st.st_uid;
    info.gid = st.st_gid;
    info.mtime_unix_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    return info;
}

Result<proto::FileInfo> stat_path(const std::string& path) {
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return path_error("stat", path, errno);
    proto::FileInfo info = info_at(AT_FDCWD, path, path, st, AccountNames::load());
    info.path.clear();  // name is the path already
    return info;
}

Result<nlohmann::json> list_directory(const proto::ListRequest& request) {
    const std::string& path = request.path;
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOTDIR) {
            struct stat st;
            if (stat(path.c_str(), &st) == 0) return invalid("'" + path + "' is not a directory");
        }
        return path_error("list", path, errno);
    }
    AccountNames users = AccountNames::load();
    ListWalk walk{users, {}};
    TRY(list_level(walk, std::move(fd), path, request.depth - 1));
    auto& entries = walk.entries;
    std::sort(entries.begin(), entries.end(),
              [](const proto::FileInfo& a, const proto::FileInfo& b) { return a.path < b.path; });
    nlohmann::json list = nlohmann::json::array();
    for (const auto& e : entries) list.push_back(proto::to_json(e));
    return nlohmann::json{{"entries", std::move(list)}};
}

Result<std::optional<FileOwner>> resolve_owner(const std::string& user) {
    if (user.empty()) return std::optional<FileOwner>();
    UserAccount account = TRY(lookup_user(user));
    return std::optional<FileOwner>(FileOwner{account.uid, account.gid});
}

Status make_parent_directories(const std::string& dir, mode_t mode, const std::optional<FileOwner>& owner) {
    std::string prefix;
    size_t pos = 0;
    while (pos < dir.size()) {
        size_t next = dir.find('/', pos);
        if (next == std::string::npos) next = dir.size();
        if (next > pos) {
            prefix.push_back('/');
            prefix.append(dir, pos, next - pos);
            if (mkdir(prefix.c_str(), mode) != 0) {
                int err = errno;
                struct stat st;
                if (err != EEXIST) return path_error("create directory", prefix, err);
                if (stat(prefix.c_str(), &st) != 0) return path_error("stat", prefix, errno);
                if (!S_ISDIR(st.st_mode))
                    return make_error(ErrorCode::Exists, "cannot create directory '" + prefix +
                                                                "': a file that is not a directory is in the way");
            } else {
                TRY(chown_to(prefix, owner));
            }
        }
        pos = next + 1;
    }
    return ok_status();
}

Status make_directory(const proto::MkdirRequest& request) {
    const std::string& path = request.path;
    const std::optional<FileOwner> owner = TRY(resolve_owner(request.user));
    if (request.parents) {
        struct stat st;
        if (stat(path.c_str(), &st) == 0) {
            if (S_ISDIR(st.st_mode)) return ok_status();
            return make_error(ErrorCode::Exists, "cannot create directory '" + path + "': a file is in the way");
        }
        size_t slash = path.find_last_not_of('/');
        slash = slash == std::string::npos ? 0 : path.rfind('/', slash);
        if (slash != std::string::npos && slash > 0) TRY(make_parent_directories(path.substr(0, slash), 0755, owner));
    }
    if (mkdir(path.c_str(), request.mode & 07777) != 0) {
        int err = errno;
        if (err == EEXIST && request.parents) {
            struct stat st;
            if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return ok_status();  // lost a race; fine
        }
        return path_error("create directory", path, err);
    }
    // mkdir applies the umask; the caller asked for exact bits.
    if (chmod(path.c_str(), request.mode & 07777) != 0) return path_error("set the mode of", path, errno);
    return chown_to(path, owner);
}

Status remove_path(const proto::RemoveRequest& request) {
    const std::string& path = request.path;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return path_error("remove", path, errno);
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path.c_str()) != 0) return path_error("remove", path, errno);
        return ok_status();
    }
    if (request.recursive) return remove_tree(path);
    if (rmdir(path.c_str()) != 0) {
        int err = errno;
        if (err == ENOTEMPTY || err == EEXIST)
            return make_error(ErrorCode::NotEmpty,
                              "cannot remove '" + path + "': the directory is not empty (set recursive)");
        return path_error("remove", path, err);
    }
    return ok_status();
}

Status move_path(const proto::MoveRequest& request) {
    struct stat st;
    if (lstat(request.from.c_str(), &st) != 0) return path_error("move", request.from, errno);
    if (rename(request.from.c_str(), request.to.c_str()) != 0) {
        int err = errno;
        if (err == ENOTEMPTY || err == EEXIST)
            return make_error(ErrorCode::Exists, "cannot move '" + request.from + "' to '" + request.to +
                                                     "': a folder that is not empty is in the way");
        if (err == EISDIR || err == ENOTDIR)
            return make_error(ErrorCode::Exists, "cannot move '" + request.from + "' to '" + request.to +
                                                     "': a " + (err == EISDIR ? "folder" : "file") + " is in the way");
        if (err == EINVAL)
            return invalid("cannot move '" + request.from + "' into itself ('" + request.to + "')");
        return make_error(errno_code(err), "cannot move '" + request.from + "' to '" + request.to +
                                               "': " + std::strerror(err));
    }
    return ok_status();
}

}  // namespace kiln::agent
