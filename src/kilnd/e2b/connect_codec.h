// The Connect protocol (connectrpc.com/docs/protocol) in the JSON form the e2b SDK speaks to envd:
// unary calls are a POST of `application/json` answered with JSON (errors: an HTTP status and
// {code, message}); server-streaming calls are a POST of one `application/connect+json` envelope
// answered with envelopes, the last one flagged end-of-stream with {} or {"error": {...}}. An
// envelope is a flag byte, a 4-byte big-endian length and that many bytes of JSON. No HTTP here:
// these functions see bytes and headers' values only, so the fuzz target runs them alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kiln::daemon::e2b {

using nlohmann::json;

// Connect's error codes (the names on the wire are the snake_case ones).
enum class ConnectCode {
    Canceled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
};

const char* connect_code_name(ConnectCode code);
// The HTTP status of a unary error with this code (the protocol's table).
int connect_http_status(ConnectCode code);

struct ConnectError {
    ConnectCode code = ConnectCode::Internal;
    std::string message;
};

// {"code": "not_found", "message": "..."}: a unary error's body, and the end-of-stream's "error".
json connect_error_json(const ConnectError& error);

inline constexpr const char* kConnectUnaryType = "application/json";
inline constexpr const char* kConnectStreamType = "application/connect+json";
inline constexpr uint8_t kEnvelopeCompressed = 0x01;
inline constexpr uint8_t kEnvelopeEndStream = 0x02;
inline constexpr size_t kEnvelopeHeaderSize = 5;
// The largest request message accepted (unary body or envelope payload). envd's requests are
// small (a command line, a path, stdin chunks the SDK sends as they come); file contents travel
// over /files instead.
inline constexpr size_t kMaxConnectMessage = 1024 * 1024;

// An envelope: flag byte, big-endian length, payload.
std::string encode_envelope(uint8_t flags, std::string_view payload);
// A stream's message envelope (flags 0) holding `message`.
std::string encode_stream_message(const json& message);
// The end-of-stream envelope: {} or {"error": {code, message}}.
std::string encode_end_stream(const std::optional<ConnectError>& error);

// The header of the envelope at the start of `bytes`, when all 5 bytes are there.
struct EnvelopeHeader {
    uint8_t flags = 0;
    uint32_t length = 0;
};
std::optional<EnvelopeHeader> peek_envelope_header(std::string_view bytes);

// A request's message as a JSON object, or the Connect error to answer with. Hostile input: any
// bytes, any content type.
struct ParsedMessage {
    std::optional<json> message;
    std::optional<ConnectError> error;
    bool ok() const { return message.has_value(); }
};
// A unary request: `content_type` must be application/json (parameters such as charset allowed),
// the body one JSON object of at most `max_size` bytes (an empty body is the empty message).
ParsedMessage parse_unary_request(std::string_view content_type, std::string_view body,
                                  size_t max_size = kMaxConnectMessage);
// A server-streaming request: `content_type` application/connect+json, the body exactly one
// uncompressed envelope (flags 0) whose payload is one JSON object of at most `max_size` bytes.
ParsedMessage parse_stream_request(std::string_view content_type, std::string_view body,
                                   size_t max_size = kMaxConnectMessage);

}  // namespace kiln::daemon::e2b
