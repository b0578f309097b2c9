// Atomic file writes: temp file in the target folder, fchmod, rename; the temp file never outlives a failure.
#include "agent/file_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "agent/errno_codes.h"
#include "agent/file_ops.h"

namespace kiln::agent {
namespace {

Error invalid(const std::string& message) { return make_error(ErrorCode::InvalidArgument, message); }

}  // namespace

Result<std::unique_ptr<FileWriter>> FileWriter::create(const proto::WriteRequest& request) {
    const std::string& path = request.path;
    if (path.back() == '/') return invalid("cannot write '" + path + "': the path names a directory");
    size_t slash = path.rfind('/');
    std::string dir = path.substr(0, slash);  // "" for a file directly under /
    std::string base = path.substr(slash + 1);
    if (base == "." || base == "..") return invalid("cannot write '" + path + "': the path names a directory");

    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        return invalid("cannot write '" + path + "': it is a directory");
    const std::optional<FileOwner> owner = TRY(resolve_owner(request.user));
    if (request.parents && !dir.empty()) TRY(make_parent_directories(dir, 0755, owner));

    // Keep the temp name within NAME_MAX however long the target's name is.
    std::string temp = dir + "/." + base.substr(0, 200) + ".kiln-tmp-XXXXXX";
    int fd = mkostemp(temp.data(), O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT) return path_error("write", path, err);
        return path_error("create a temp file for", path, err);
    }
    return std::unique_ptr<FileWriter>(new FileWriter(UniqueFd(fd), std::move(temp), path, request.mode, owner));
}

FileWriter::~FileWriter() {
    if (!m_temp_path.empty()) unlink(m_temp_path.c_str());
}

Status FileWriter::append(std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(m_fd.get(), data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return path_error("write", m_path, errno);
        }
        data.remove_prefix(static_cast<size_t>(n));
        m_size += static_cast<uint64_t>(n);
    }
    return ok_status();
}

Result<uint64_t> FileWriter::commit() {
    // Owner before mode: chown clears setuid/setgid bits the mode may ask for.
    if (m_owner && fchown(m_fd.get(), m_owner->uid, m_owner->gid) != 0)
        return path_error("change the owner of", m_path, errno);
    if (fchmod(m_fd.get(), m_mode & 07777) != 0) return path_error("set the mode of", m_path, errno);
    if (::close(m_fd.release()) != 0) return path_error("write", m_path, errno);
    if (rename(m_temp_path.c_str(), m_path.c_str()) != 0) {
        int err = errno;
        if (err == EISDIR) return invalid("cannot write '" + m_path + "': it is a directory");
        return path_error("rename a temp file onto", m_path, err);
    }
    m_temp_path.clear();
    return m_size;
}

}  // namespace kiln::agent
