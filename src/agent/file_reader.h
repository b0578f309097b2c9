// FileReader: one open regular file being streamed to the host as Data frames.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kiln::agent {

class FileReader {
public:
    // Opens a regular file. A directory or any other kind of file is invalid_argument.
    static Result<FileReader> open(const std::string& path);

    // Reads the next chunk into buf (at most cap bytes); 0 means the end of the file.
    Result<size_t> read_chunk(char* buf, size_t cap);
    uint64_t bytes_read() const { return m_bytes_read; }

private:
    FileReader(UniqueFd fd, std::string path) : m_fd(std::move(fd)), m_path(std::move(path)) {}

    UniqueFd m_fd;
    std::string m_path;
    uint64_t m_bytes_read = 0;
};

}  // namespace kiln::agent
