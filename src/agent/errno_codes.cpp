// errno -> ErrorCode mapping for agent replies.
#include "agent/errno_codes.h"

#include <cerrno>
#include <cstring>

#include "proto/messages.h"

namespace kiln::agent {

ErrorCode errno_code(int err) {
    switch (err) {
    case ENOENT:
    case ENOTDIR: return ErrorCode::NotFound;
    case EACCES:
    case EPERM: return ErrorCode::PermissionDenied;
    case EEXIST: return ErrorCode::Exists;
    case ENOTEMPTY: return ErrorCode::NotEmpty;
    case EISDIR: return ErrorCode::InvalidArgument;
    default: return ErrorCode::IoError;
    }
}

Error path_error(const std::string& what, const std::string& path, int err) {
    return make_error(errno_code(err), "cannot " + what + " '" + path + "': " + std::strerror(err));
}

}  // namespace kiln::agent
