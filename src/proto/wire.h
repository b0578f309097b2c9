// The kiln agent wire format, declared once and used by kilnd/kiln (host) and kiln-agent (guest).
//
// A connection is a byte stream (a virtio-serial port in the guest, a unix socket on the host)
// carrying frames. Every frame is a 16-byte little-endian header and a payload:
//
//   offset 0  u32 magic    'K' 'I' 'L' 'N'
//   offset 4  u8  version  kWireVersion
//   offset 5  u8  type     FrameType
//   offset 6  u16 flags    must be 0 in version 1
//   offset 8  u32 stream   stream id; many streams run at once on one connection
//   offset 12 u32 length   payload bytes, at most kMaxPayload
//
// A stream is opened by the host with a Request frame (a JSON object with "op") on a stream id
// the host picks (odd numbers; 0 is the connection itself). It ends with exactly one Result or
// Error frame from the agent. In between, exec streams carry Stdin/Eof from the host and
// Stdout/Stderr from the agent; file reads carry Data from the agent, file writes Data/Eof
// from the host. Signal frames (JSON {"signal": N}) from the host signal a running exec; a Detach
// frame ends an exec or attach stream while a kept exec goes on (docs/agent-protocol.md).
//
// A malformed frame is answered with an Error frame on stream 0 (or on its stream if the
// header was sound); the decoder then resynchronises on the next magic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::proto {

inline constexpr uint32_t kMagic = 0x4E4C494B;  // "KILN" read as a little-endian u32
inline constexpr uint8_t kWireVersion = 1;
inline constexpr size_t kHeaderSize = 16;
inline constexpr uint32_t kMaxPayload = 256 * 1024;

enum class FrameType : uint8_t {
    Request = 1,  // host -> agent, JSON, opens a stream
    Result = 2,   // agent -> host, JSON, ends a stream successfully
    Error = 3,    // agent -> host, JSON {"code","message"}, ends a stream (stream 0: connection-level)
    Stdin = 4,    // host -> agent, raw bytes for a running exec
    Eof = 5,      // host -> agent, end of Stdin or of file Data
    Stdout = 6,   // agent -> host, raw bytes
    Stderr = 7,   // agent -> host, raw bytes
    Data = 8,     // either way, raw file content
    Signal = 9,   // host -> agent, JSON {"signal": N}: signal the exec's process group
    Started = 10, // agent -> host, JSON {"pid": N}: the exec is running
    Detach = 11,  // host -> agent, empty: end this stream now; a kept exec goes on running, a watch ends with Result {}
};

const char* frame_type_name(FrameType type);
bool is_known_frame_type(uint8_t type);

struct Frame {
    FrameType type;
    uint32_t stream = 0;
    std::string payload;
};

// Appends the encoded frame to `out`. The payload must be at most kMaxPayload bytes.
void encode_frame(std::string& out, FrameType type, uint32_t stream, std::string_view payload);
std::string encode_frame(FrameType type, uint32_t stream, std::string_view payload);

// Incremental decoder: feed bytes as they arrive, then pop frames. Malformed input does not stop
// it: the bad bytes are skipped up to the next magic and reported once per bad run as a
// DecodeError, so the caller can answer with an Error frame and keep serving.
struct DecodeError {
    uint32_t stream = 0;  // the stream of a frame whose header was readable, else 0
    std::string message;
};

class FrameDecoder {
public:
    void feed(const char* data, size_t size);
    void feed(std::string_view data) { feed(data.data(), data.size()); }

    // The next complete frame, or nothing if more bytes are needed. Errors are queued separately.
    std::optional<Frame> next();
    std::optional<DecodeError> next_error();

    size_t buffered() const { return m_buffer.size() - m_offset; }

private:
    void compact();
    void skip_to_next_magic(std::string message, uint32_t stream);

    std::string m_buffer;
    size_t m_offset = 0;
    std::deque<DecodeError> m_errors;
    bool m_resyncing = false;
};

}  // namespace kiln::proto
