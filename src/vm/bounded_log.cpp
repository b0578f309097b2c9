// BoundedLog: head + rolling tail, rewritten in place when the size limit is reached.
#include "vm/bounded_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "base/errno_error.h"

namespace kiln::vm {

Result<std::unique_ptr<BoundedLog>> BoundedLog::create(const std::string& path, size_t max_bytes, size_t head_bytes) {
    if (head_bytes + 1024 > max_bytes) return make_error(ErrorCode::InvalidArgument, "log head must be well below its limit");
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return errno_error("create " + path);
    return std::unique_ptr<BoundedLog>(new BoundedLog(std::move(fd), path, max_bytes, head_bytes));
}

Status BoundedLog::write_at_end(std::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::pwrite(m_fd.get(), data.data() + done, data.size() - done,
                             static_cast<off_t>(m_file_size + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("write " + m_path);
        }
        done += static_cast<size_t>(n);
    }
    m_file_size += data.size();
    return ok_status();
}

Status BoundedLog::append(std::string_view data) {
    m_total += data.size();
    // The head fills first and is never rewritten.
    if (m_file_size < m_head && m_dropped == 0) {
        size_t n = std::min(data.size(), m_head - m_file_size);
        TRY(write_at_end(data.substr(0, n)));
        data.remove_prefix(n);
    }
    if (data.empty()) return ok_status();
    m_recent.append(data);
    if (m_recent.size() > 2 * m_tail_keep) m_recent.erase(0, m_recent.size() - m_tail_keep);
    if (m_file_size + data.size() <= m_max) return write_at_end(data);
    return rewrite();
}

Status BoundedLog::rewrite() {
    // Keep the head, say what is missing, then the most recent m_tail_keep bytes.
    if (m_recent.size() > m_tail_keep) m_recent.erase(0, m_recent.size() - m_tail_keep);
    uint64_t kept = m_head + m_recent.size();
    m_dropped = m_total > kept ? m_total - kept : 0;
    std::string marker = "\n[kiln: " + std::to_string(m_dropped) + " bytes of console output dropped here]\n";
    if (::ftruncate(m_fd.get(), static_cast<off_t>(m_head)) != 0) return errno_error("truncate " + m_path);
    m_file_size = m_head;
    TRY(write_at_end(marker));
    return write_at_end(m_recent);
}

}  // namespace kiln::vm
