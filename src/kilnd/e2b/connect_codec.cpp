#include "kilnd/e2b/connect_codec.h"

#include <cctype>

namespace kiln::daemon::e2b {

const char* connect_code_name(ConnectCode code) {
    switch (code) {
    case ConnectCode::Canceled: return "canceled";
    case ConnectCode::Unknown: return "unknown";
    case ConnectCode::InvalidArgument: return "invalid_argument";
    case ConnectCode::DeadlineExceeded: return "deadline_exceeded";
    case ConnectCode::NotFound: return "not_found";
    case ConnectCode::AlreadyExists: return "already_exists";
    case ConnectCode::PermissionDenied: return "permission_denied";
    case ConnectCode::ResourceExhausted: return "resource_exhausted";
    case ConnectCode::FailedPrecondition: return "failed_precondition";
    case ConnectCode::Aborted: return "aborted";
    case ConnectCode::OutOfRange: return "out_of_range";
    case ConnectCode::Unimplemented: return "unimplemented";
    case ConnectCode::Internal: return "internal";
    case ConnectCode::Unavailable: return "unavailable";
    case ConnectCode::DataLoss: return "data_loss";
    case ConnectCode::Unauthenticated: return "unauthenticated";
    }
    return "unknown";
}

int connect_http_status(ConnectCode code) {
    switch (code) {
    case ConnectCode::Canceled: return 499;
    case ConnectCode::Unknown: return 500;
    case ConnectCode::InvalidArgument: return 400;
    case ConnectCode::DeadlineExceeded: return 504;
    case ConnectCode::NotFound: return 404;
    case ConnectCode::AlreadyExists: return 409;
    case ConnectCode::PermissionDenied: return 403;
    case ConnectCode::ResourceExhausted: return 429;
    case ConnectCode::FailedPrecondition: return 400;
    case ConnectCode::Aborted: return 409;
    case ConnectCode::OutOfRange: return 400;
    case ConnectCode::Unimplemented: return 501;
    case ConnectCode::Internal: return 500;
    case ConnectCode::Unavailable: return 503;
    case ConnectCode::DataLoss: return 500;
    case ConnectCode::Unauthenticated: return 401;
    }
    return 500;
}

json connect_error_json(const ConnectError& error) {
    return json{{"code", connect_code_name(error.code)}, {"message", error.message}};
}

std::string encode_envelope(uint8_t flags, std::string_view payload) {
    std::string out;
    out.reserve(kEnvelopeHeaderSize + payload.size());
    auto length = static_cast<uint32_t>(payload.size());
    out.push_back(static_cast<char>(flags));
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((length >> shift) & 0xff));
    out.append(payload);
    return out;
}

std::string encode_stream_message(const json& message) {
    return encode_envelope(0, message.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::string encode_end_stream(const std::optional<ConnectError>& error) {
    json end = json::object();
    if (error) end["error"] = connect_error_json(*error);
    return encode_envelope(kEnvelopeEndStream, end.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::optional<EnvelopeHeader> peek_envelope_header(std::string_view bytes) {
    if (bytes.size() < kEnvelopeHeaderSize) return std::nullopt;
    EnvelopeHeader header;
    header.flags = static_cast<uint8_t>(bytes[0]);
    for (size_t i = 1; i < kEnvelopeHeaderSize; ++i)
        header.length = (header.length << 8) | static_cast<uint8_t>(bytes[i]);
    return header;
}

namespace {

ParsedMessage refuse(ConnectCode code, std::string message) {
    ParsedMessage parsed;
    parsed.error = ConnectError{code, std::move(message)};
    return parsed;
}

// "Application/JSON; charset=utf-8" -> "application/json".
std::string media_type(std::string_view content_type) {
    std::string_view type = content_type.substr(0, content_type.find(';'));
    while (!type.empty() && std::isspace(static_cast<unsigned char>(type.front()))) type.remove_prefix(1);
    while (!type.empty() && std::isspace(static_cast<unsigned char>(type.back()))) type.remove_suffix(1);
    std::string lower(type);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lower;
}

std::string too_large(size_t size, size_t max_size) {
    return "the request message is " + std::to_string(size) + " bytes, over the limit of " + std::to_string(max_size);
}

ParsedMessage parse_object(std::string_view text) {
    // Connect's JSON form of an empty message may be an empty body.
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) return ParsedMessage{json::object(), std::nullopt};
    json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return refuse(ConnectCode::InvalidArgument, "the request message is not valid JSON");
    if (!doc.is_object()) return refuse(ConnectCode::InvalidArgument, "the request message must be a JSON object");
    return ParsedMessage{std::move(doc), std::nullopt};
}

}  // namespace

ParsedMessage parse_unary_request(std::string_view content_type, std::string_view body, size_t max_size) {
    if (media_type(content_type) != kConnectUnaryType)
        return refuse(ConnectCode::InvalidArgument,
                      "unary calls take Content-Type application/json (the Connect protocol's JSON form), not '" +
                          std::string(content_type.substr(0, 100)) + "'");
    if (body.size() > max_size) return refuse(ConnectCode::ResourceExhausted, too_large(body.size(), max_size));
    return parse_object(body);
}

ParsedMessage parse_stream_request(std::string_view content_type, std::string_view body, size_t max_size) {
    if (media_type(content_type) != kConnectStreamType)
        return refuse(ConnectCode::InvalidArgument,
                      "streaming calls take Content-Type application/connect+json, not '" +
                          std::string(content_type.substr(0, 100)) + "'");
    auto header = peek_envelope_header(body);
    if (!header)
        return refuse(ConnectCode::InvalidArgument,
                      "the request body is " + std::to_string(body.size()) + " bytes, shorter than an envelope's 5-byte header");
    if (header->flags & kEnvelopeCompressed)
        return refuse(ConnectCode::Unimplemented, "compressed envelopes are not supported (send Connect-Content-Encoding identity)");
    if (header->flags != 0)
        return refuse(ConnectCode::InvalidArgument, "the request envelope has flags " + std::to_string(header->flags) +
                                                        "; a request message has none");
    if (header->length > max_size) return refuse(ConnectCode::ResourceExhausted, too_large(header->length, max_size));
    size_t available = body.size() - kEnvelopeHeaderSize;
    if (header->length > available)
        return refuse(ConnectCode::InvalidArgument, "the request envelope declares " + std::to_string(header->length) +
                                                        " bytes but the body holds " + std::to_string(available));
    if (header->length < available)
        return refuse(ConnectCode::InvalidArgument,
                      "the request body holds more than one envelope; a server-streaming call takes exactly one");
    return parse_object(body.substr(kEnvelopeHeaderSize));
}

}  // namespace kiln::daemon::e2b
