// Whole-file helpers and a symlink-safe recursive removal built on the *at() syscalls.
#include "base/file_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "base/errno_error.h"
#include "base/unique_fd.h"

namespace kiln {
namespace {

Status write_all_fd(int fd, const std::string& content, const std::string& path) {
    size_t done = 0;
    while (done < content.size()) {
        ssize_t n = ::write(fd, content.data() + done, content.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("write " + path);
        }
        done += static_cast<size_t>(n);
    }
    return ok_status();
}

// Removes everything inside the directory `dirfd`, then nothing else.
Status remove_contents(int dirfd, const std::string& path) {
    int dup_fd = ::dup(dirfd);
    if (dup_fd < 0) return errno_error("dup");
    DIR* dir = ::fdopendir(dup_fd);
    if (!dir) {
        ::close(dup_fd);
        return errno_error("opendir " + path);
    }
    Status status = ok_status();
    while (struct dirent* entry = ::readdir(dir)) {
        std::string name = entry->d_name;
        if (name == "." || name == "..") continue;
        struct stat st;
        if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;
            status = errno_error("stat " + path + "/" + name);
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            UniqueFd child(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!child) {
                status = errno_error("open " + path + "/" + name);
                break;
            }
            status = remove_contents(child.get(), path + "/" + name);
            if (!status.ok()) break;
            if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
                status = errno_error("rmdir " + path + "/" + name);
                break;
            }
        } else if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
            status = errno_error("unlink " + path + "/" + name);
            break;
        }
    }
    ::closedir(dir);
    return status;
}

}  // namespace

Result<std::string> read_file(const std::string& path, size_t max_size) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno_error("open " + path);
    return read_fd(fd.get(), max_size, path);
}

Result<std::string> read_fd(int fd, size_t max_size, const std::string& name) {
    std::string out;
    char buf[64 * 1024];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("read " + name);
        }
        if (n == 0) break;
        if (out.size() + static_cast<size_t>(n) > max_size)
            return make_error(ErrorCode::TooLarge, name + " is larger than " + std::to_string(max_size) + " bytes");
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

Result<std::string> read_file_tail(const std::string& path, size_t max_bytes) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno_error("open " + path);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return errno_error("stat " + path);
    off_t start = st.st_size > static_cast<off_t>(max_bytes) ? st.st_size - static_cast<off_t>(max_bytes) : 0;
    std::string out(static_cast<size_t>(st.st_size - start), '\0');
    ssize_t n = ::pread(fd.get(), out.data(), out.size(), start);
    if (n < 0) return errno_error("read " + path);
    out.resize(static_cast<size_t>(n));
    return out;
}

Status write_file(const std::string& path, const std::string& content, unsigned mode) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (!fd) return errno_error("create " + path);
    return write_all_fd(fd.get(), content, path);
}

Status write_file_atomic(const std::string& path, const std::string& content, unsigned mode) {
    std::string tmp = path + ".tmp." + std::to_string(::getpid());
    Status st = write_file(tmp, content, mode);
    if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = errno_error("rename " + tmp);
    if (!st.ok()) ::unlink(tmp.c_str());
    return st;
}

Status make_dirs(const std::string& path, unsigned mode) {
    if (path.empty()) return make_error(ErrorCode::InvalidArgument, "empty directory path");
    for (size_t pos = 1; pos <= path.size(); ++pos) {
        if (pos != path.size() && path[pos] != '/') continue;
        std::string prefix = path.substr(0, pos);
        if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) return errno_error("mkdir " + prefix);
    }
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return errno_error("stat " + path);
    if (!S_ISDIR(st.st_mode)) return make_error(ErrorCode::IoError, path + " exists and is not a directory");
    return ok_status();
}

Status remove_tree(const std::string& path) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return ok_status();
        return errno_error("stat " + path);
    }
    if (!S_ISDIR(st.st_mode)) {
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("unlink " + path);
        return ok_status();
    }
    UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) return errno_error("open " + path);
    TRY(remove_contents(dir.get(), path));
    if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return errno_error("rmdir " + path);
    return ok_status();
}

bool path_exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

uint64_t allocated_bytes(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) return static_cast<uint64_t>(st.st_blocks) * 512;
    uint64_t total = 0;  // what is in the folder (the folder's own block is not counted)
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(path, ec); !ec && it != std::filesystem::recursive_directory_iterator();
         it.increment(ec)) {
        if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
    return total;
}

std::string last_lines(const std::string& text, size_t max_lines) {
    size_t end = text.size();
    while (end > 0 && text[end - 1] == '\n') --end;
    size_t pos = end;
    size_t lines = 0;
    while (pos > 0) {
        if (text[pos - 1] == '\n' && ++lines == max_lines) break;
        --pos;
    }
    return text.substr(pos, end - pos);
}

}  // namespace kiln
