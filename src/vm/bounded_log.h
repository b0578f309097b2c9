// BoundedLog: an append-only log file that never outgrows its limit: it keeps the head and a rolling tail.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kiln::vm {

// The first `head_bytes` are kept forever (the boot log); when the file would pass `max_bytes`,
// it is rewritten as head + a marker line + the most recent output, which leaves room to append
// again. Not thread-safe: one writer.
class BoundedLog {
public:
    static constexpr size_t kDefaultMax = 1024 * 1024;
    static constexpr size_t kDefaultHead = 64 * 1024;

    static Result<std::unique_ptr<BoundedLog>> create(const std::string& path, size_t max_bytes = kDefaultMax,
                                                      size_t head_bytes = kDefaultHead);

    Status append(std::string_view data);
    size_t file_size() const { return m_file_size; }
    uint64_t total_bytes() const { return m_total; }   // everything ever appended
    uint64_t dropped_bytes() const { return m_dropped; }

private:
    BoundedLog(UniqueFd fd, std::string path, size_t max_bytes, size_t head_bytes)
        : m_fd(std::move(fd)), m_path(std::move(path)), m_max(max_bytes), m_head(head_bytes),
          m_tail_keep((max_bytes - head_bytes) / 2) {}
    Status rewrite();
    Status write_at_end(std::string_view data);

    UniqueFd m_fd;
    std::string m_path;
    size_t m_max;
    size_t m_head;
    size_t m_tail_keep;     // bytes of recent output kept at a rewrite
    std::string m_recent;   // the most recent output past the head (at most 2 * m_tail_keep)
    size_t m_file_size = 0;
    uint64_t m_total = 0;
    uint64_t m_dropped = 0;
};

}  // namespace kiln::vm
