// Opening and chunked reading of a file the host asked to read.
#include "agent/file_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "agent/errno_codes.h"
#include "proto/messages.h"

namespace kiln::agent {

Result<FileReader> FileReader::open(const std::string& path) {
    // O_NONBLOCK so that opening a FIFO cannot hang the agent; such files are refused below.
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) return path_error("read", path, errno);
    struct stat st;
    if (fstat(fd.get(), &st) != 0) return path_error("stat", path, errno);
    if (S_ISDIR(st.st_mode)) return make_error(ErrorCode::InvalidArgument, "cannot read '" + path + "': it is a directory");
    if (!S_ISREG(st.st_mode))
        return make_error(ErrorCode::InvalidArgument, "cannot read '" + path + "': not a regular file");
    int flags = fcntl(fd.get(), F_GETFL);
    if (flags >= 0) fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    return FileReader(std::move(fd), path);
}

Result<size_t> FileReader::read_chunk(char* buf, size_t cap) {
    for (;;) {
        ssize_t n = ::read(m_fd.get(), buf, cap);
        if (n >= 0) {
            m_bytes_read += static_cast<uint64_t>(n);
            return static_cast<size_t>(n);
        }
        if (errno != EINTR) return path_error("read", m_path, errno);
    }
}

}  // namespace kiln::agent
