// read_secret_file: open without following into a FIFO's block, check the opened file, read it.
#include "base/secret_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "base/errno_error.h"
#include "base/file_util.h"
#include "base/unique_fd.h"

namespace kiln {
namespace {

std::string octal_mode(mode_t mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

Status check_owner(const std::string& what, const struct stat& st) {
    uid_t self = ::geteuid();
    if (st.st_uid != 0 && st.st_uid != self)
        return make_error(ErrorCode::PermissionDenied,
                          what + " is owned by uid " + std::to_string(st.st_uid) + "; it must be owned by root or by kilnd's uid (" +
                              std::to_string(self) + ")");
    return ok_status();
}

}  // namespace

Result<std::string> read_secret_file(const std::string& path, size_t max_bytes) {
    const std::string what = "secret file " + path;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) {
        Error e = errno_error("open " + what);
        if (errno == ENOENT) e.code = ErrorCode::NotFound;
        return e;
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return errno_error("stat " + what);
    if (!S_ISREG(st.st_mode)) return make_error(ErrorCode::InvalidArgument, what + " is not a regular file");
    TRY(check_owner(what, st));
    if (st.st_mode & 077)
        return make_error(ErrorCode::PermissionDenied, what + " has mode " + octal_mode(st.st_mode) +
                                                           ", open to group or others; make it 0600 or 0400 (chmod 600 " + path + ")");
    std::string out = TRY(read_fd(fd.get(), max_bytes, what));
    if (!out.empty() && out.back() == '\n') {
        out.pop_back();
        if (!out.empty() && out.back() == '\r') out.pop_back();
    }
    if (out.empty()) return make_error(ErrorCode::InvalidArgument, what + " is empty");
    return out;
}

Status check_secret_dir(const std::string& path) {
    const std::string what = "secrets folder " + path;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
        Error e = errno_error("stat " + what);
        if (errno == ENOENT) e.code = ErrorCode::NotFound;
        return e;
    }
    if (!S_ISDIR(st.st_mode)) return make_error(ErrorCode::InvalidArgument, what + " is not a folder");
    TRY(check_owner(what, st));
    if (st.st_mode & 022)
        return make_error(ErrorCode::PermissionDenied, what + " has mode " + octal_mode(st.st_mode) +
                                                           ", writable by group or others; make it 0700 (chmod 700 " + path + ")");
    return ok_status();
}

}  // namespace kiln
