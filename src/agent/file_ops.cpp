// stat, list, mkdir and remove on the guest file system, with errno mapped to stable codes.
#include "agent/file_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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

}  // namespace

proto::FileInfo file_info_from_stat(const std::string& name, const struct stat& st) {
    proto::FileInfo info;
    info.name = name;
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
    return file_info_from_stat(path, st);
}

Result<nlohmann::json> list_directory(const std::string& path) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOTDIR) {
            struct stat st;
            if (stat(path.c_str(), &st) == 0) return invalid("'" + path + "' is not a directory");
        }
        return path_error("list", path, errno);
    }
    DIR* raw = fdopendir(fd.get());
    if (!raw) return path_error("list", path, errno);
    fd.release();
    DirPtr dir(raw);
    std::vector<proto::FileInfo> entries;
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
        if (fstatat(dirfd(dir.get()), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;  // removed while we listed
            return path_error("stat", path + "/" + name, errno);
        }
        entries.push_back(file_info_from_stat(name, st));
    }
    std::sort(entries.begin(), entries.end(),
              [](const proto::FileInfo& a, const proto::FileInfo& b) { return a.name < b.name; });
    nlohmann::json list = nlohmann::json::array();
    for (const auto& e : entries) list.push_back(proto::to_json(e));
    return nlohmann::json{{"entries", std::move(list)}};
}

Status make_parent_directories(const std::string& dir, mode_t mode) {
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
            }
        }
        pos = next + 1;
    }
    return ok_status();
}

Status make_directory(const proto::MkdirRequest& request) {
    const std::string& path = request.path;
    if (request.parents) {
        struct stat st;
        if (stat(path.c_str(), &st) == 0) {
            if (S_ISDIR(st.st_mode)) return ok_status();
            return make_error(ErrorCode::Exists, "cannot create directory '" + path + "': a file is in the way");
        }
        size_t slash = path.find_last_not_of('/');
        slash = slash == std::string::npos ? 0 : path.rfind('/', slash);
        if (slash != std::string::npos && slash > 0) TRY(make_parent_directories(path.substr(0, slash), 0755));
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
    return ok_status();
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

}  // namespace kiln::agent
