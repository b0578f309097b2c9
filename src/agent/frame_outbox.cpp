// Buffering and non-blocking flushing of frames from the agent to the host.
#include "agent/frame_outbox.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "proto/messages.h"

namespace kiln::agent {

std::string dump_json(const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void FrameOutbox::push(proto::FrameType type, uint32_t stream, std::string_view payload) {
    do {
        size_t n = std::min<size_t>(payload.size(), proto::kMaxPayload);
        proto::encode_frame(m_buffer, type, stream, payload.substr(0, n));
        payload.remove_prefix(n);
    } while (!payload.empty());
}

void FrameOutbox::push_json(proto::FrameType type, uint32_t stream, const nlohmann::json& body) {
    std::string text = dump_json(body);
    if (text.size() > proto::kMaxPayload) {
        push_error(stream, ErrorCode::IoError,
                   "the reply is " + std::to_string(text.size()) + " bytes, more than the frame limit of " +
                       std::to_string(proto::kMaxPayload));
        return;
    }
    push(type, stream, text);
}

void FrameOutbox::push_error(uint32_t stream, ErrorCode code, const std::string& message) {
    // Messages can quote hostile input; keep them well inside one frame.
    std::string text = dump_json(proto::make_error_body(code, message.substr(0, 16 * 1024)));
    push(proto::FrameType::Error, stream, text);
}

void FrameOutbox::clear() {
    m_buffer.clear();
    m_buffer.shrink_to_fit();
    m_offset = 0;
}

FrameOutbox::FlushResult FrameOutbox::flush(int fd) {
    while (pending() > 0) {
        ssize_t n = ::write(fd, m_buffer.data() + m_offset, pending());
        if (n > 0) {
            m_offset += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        return FlushResult::Broken;
    }
    if (pending() == 0) {
        m_buffer.clear();
        m_offset = 0;
        // Give back the memory of a burst (e.g. a 100 MB stream) once it has drained.
        if (m_buffer.capacity() > 4 * kBackPressureBytes) m_buffer.shrink_to_fit();
        return FlushResult::Drained;
    }
    if (m_offset >= m_buffer.size() / 2) {
        m_buffer.erase(0, m_offset);
        m_offset = 0;
    }
    return FlushResult::WouldBlock;
}

}  // namespace kiln::agent
