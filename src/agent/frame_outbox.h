// FrameOutbox: the agent's outgoing byte buffer towards the host, flushed to a non-blocking fd.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/error_code.h"
#include "proto/wire.h"

namespace kiln::agent {

// Serialises JSON for the wire without ever throwing: invalid UTF-8 (e.g. a file name) becomes U+FFFD.
std::string dump_json(const nlohmann::json& j);

class FrameOutbox {
public:
    // Above this many unsent bytes the server stops reading child pipes and files (back-pressure).
    static constexpr size_t kBackPressureBytes = 1 << 20;

    // Appends one frame. Payloads longer than kMaxPayload are the caller's bug and are split.
    void push(proto::FrameType type, uint32_t stream, std::string_view payload);
    // Appends a JSON frame; a body too large for one frame becomes an io_error Error frame.
    void push_json(proto::FrameType type, uint32_t stream, const nlohmann::json& body);
    void push_error(uint32_t stream, ErrorCode code, const std::string& message);

    size_t pending() const { return m_buffer.size() - m_offset; }
    bool empty() const { return pending() == 0; }
    bool congested() const { return pending() >= kBackPressureBytes; }
    void clear();

    enum class FlushResult { Drained, WouldBlock, Broken };
    // Writes as much as the fd takes without blocking.
    FlushResult flush(int fd);

private:
    std::string m_buffer;
    size_t m_offset = 0;
};

}  // namespace kiln::agent
