// errno -> errc mapping for agent replies.
#include "agent/errno_codes.h"

#include <cerrno>
#include <cstring>

#include "proto/messages.h"

namespace kiln::agent {

const char* errno_code(int err) {
    switch (err) {
    case ENOENT:
    case ENOTDIR: return proto::errc::kNotFound;
    case EACCES:
    case EPERM: return proto::errc::kPermissionDenied;
    case EEXIST: return proto::errc::kExists;
    case ENOTEMPTY: return proto::errc::kNotEmpty;
    case EISDIR: return proto::errc::kInvalidArgument;
    default: return proto::errc::kIoError;
    }
}

Error path_error(const std::string& what, const std::string& path, int err) {
    return make_error(errno_code(err), "cannot " + what + " '" + path + "': " + std::strerror(err));
}

}  // namespace kiln::agent
