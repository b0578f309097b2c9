// Encoding and incremental, resynchronising decoding of agent frames.
#include "proto/wire.h"

#include <cstring>

namespace kiln::proto {
namespace {

void put_u32(std::string& out, uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u16(std::string& out, uint16_t v) {
    out.push_back(static_cast<char>(v & 0xff));
    out.push_back(static_cast<char>(v >> 8));
}
uint32_t get_u32(const unsigned char* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
uint16_t get_u16(const unsigned char* p) { return uint16_t(p[0] | p[1] << 8); }

}  // namespace

const char* frame_type_name(FrameType type) {
    switch (type) {
    case FrameType::Request: return "request";
    case FrameType::Result: return "result";
    case FrameType::Error: return "error";
    case FrameType::Stdin: return "stdin";
    case FrameType::Eof: return "eof";
    case FrameType::Stdout: return "stdout";
    case FrameType::Stderr: return "stderr";
    case FrameType::Data: return "data";
    case FrameType::Signal: return "signal";
    case FrameType::Started: return "started";
    case FrameType::Detach: return "detach";
    }
    return "unknown";
}

bool is_known_frame_type(uint8_t type) { return type >= 1 && type <= 11; }

void encode_frame(std::string& out, FrameType type, uint32_t stream, std::string_view payload) {
    out.reserve(out.size() + kHeaderSize + payload.size());
    put_u32(out, kMagic);
    out.push_back(static_cast<char>(kWireVersion));
    out.push_back(static_cast<char>(type));
    put_u16(out, 0);
    put_u32(out, stream);
    put_u32(out, static_cast<uint32_t>(payload.size()));
    out.append(payload);
}

std::string encode_frame(FrameType type, uint32_t stream, std::string_view payload) {
    std::string out;
    encode_frame(out, type, stream, payload);
    return out;
}

void FrameDecoder::feed(const char* data, size_t size) {
    compact();
    m_buffer.append(data, size);
}

void FrameDecoder::compact() {
    // Drop consumed bytes once they dominate the buffer, so memory stays bounded by one frame.
    if (m_offset > 0 && (m_offset >= m_buffer.size() / 2 || m_offset > 64 * 1024)) {
        m_buffer.erase(0, m_offset);
        m_offset = 0;
    }
}

void FrameDecoder::skip_to_next_magic(std::string message, uint32_t stream) {
    // Report a bad run once, however many bytes it spans.
    if (!m_resyncing) m_errors.push_back(DecodeError{stream, std::move(message)});
    m_resyncing = true;
    const char magic[4] = {'K', 'I', 'L', 'N'};
    size_t found = m_buffer.find(std::string_view(magic, 4), m_offset + 1);
    if (found == std::string::npos) {
        // Keep the last 3 bytes: they may be the start of the next magic.
        m_offset = m_buffer.size() - std::min<size_t>(3, m_buffer.size() - m_offset);
    } else {
        m_offset = found;
    }
}

std::optional<Frame> FrameDecoder::next() {
    for (;;) {
        if (buffered() < 4) return std::nullopt;
        auto* p = reinterpret_cast<const unsigned char*>(m_buffer.data() + m_offset);
        if (get_u32(p) != kMagic) {
            skip_to_next_magic("bad frame magic", 0);
            continue;
        }
        if (buffered() < kHeaderSize) return std::nullopt;
        uint8_t version = p[4];
        uint8_t type = p[5];
        uint16_t flags = get_u16(p + 6);
        uint32_t stream = get_u32(p + 8);
        uint32_t length = get_u32(p + 12);
        if (version != kWireVersion) {
            skip_to_next_magic("unsupported wire version " + std::to_string(version), 0);
            continue;
        }
        if (!is_known_frame_type(type)) {
            skip_to_next_magic("unknown frame type " + std::to_string(type), stream);
            continue;
        }
        if (flags != 0) {
            skip_to_next_magic("reserved flags set", stream);
            continue;
        }
        if (length > kMaxPayload) {
            skip_to_next_magic("payload of " + std::to_string(length) + " bytes exceeds the limit of " +
                                   std::to_string(kMaxPayload),
                               stream);
            continue;
        }
        if (buffered() < kHeaderSize + length) return std::nullopt;
        m_resyncing = false;
        Frame frame{static_cast<FrameType>(type), stream, m_buffer.substr(m_offset + kHeaderSize, length)};
        m_offset += kHeaderSize + length;
        return frame;
    }
}

std::optional<DecodeError> FrameDecoder::next_error() {
    if (m_errors.empty()) return std::nullopt;
    DecodeError e = std::move(m_errors.front());
    m_errors.pop_front();
    return e;
}

}  // namespace kiln::proto
