// FileWriter: an atomic file write in progress: a temp file beside the target, renamed onto it at the end.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agent/file_ops.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "proto/messages.h"

namespace kiln::agent {

class FileWriter {
public:
    // Creates the parent folders (if asked; owned by request.user when given) and the temp file `.<basename>.kiln-tmp-XXXXXX`.
    static Result<std::unique_ptr<FileWriter>> create(const proto::WriteRequest& request);
    FileWriter(const FileWriter&) = delete;
    FileWriter& operator=(const FileWriter&) = delete;
    // Unlinks the temp file unless commit() succeeded.
    ~FileWriter();

    Status append(std::string_view data);
    // Sets the mode and renames the temp file onto the path; returns the size written.
    Result<uint64_t> commit();

    const std::string& temp_path() const { return m_temp_path; }

private:
    FileWriter(UniqueFd fd, std::string temp_path, std::string path, uint32_t mode, std::optional<FileOwner> owner)
        : m_fd(std::move(fd)), m_temp_path(std::move(temp_path)), m_path(std::move(path)), m_mode(mode),
          m_owner(owner) {}

    UniqueFd m_fd;
    std::string m_temp_path;  // empty once renamed
    std::string m_path;
    uint32_t m_mode;
    std::optional<FileOwner> m_owner;  // WriteRequest::user resolved
    uint64_t m_size = 0;
};

}  // namespace kiln::agent
