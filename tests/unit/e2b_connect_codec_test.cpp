// The Connect protocol's JSON form as kilnd's envd speaks it (src/kilnd/e2b/connect_codec.h):
// envelopes both ways, request checks, and errors in Connect's shape.
#include <gtest/gtest.h>

#include "kilnd/e2b/connect_codec.h"

using namespace kiln::daemon::e2b;

namespace {
std::string envelope(uint8_t flags, const std::string& payload) { return encode_envelope(flags, payload); }
}  // namespace

TEST(ConnectCodec, EnvelopeIsFlagThenBigEndianLengthThenPayload) {
    std::string e = encode_envelope(0x02, std::string(258, 'x'));
    ASSERT_EQ(e.size(), 5u + 258u);
    EXPECT_EQ(uint8_t(e[0]), 0x02);
    EXPECT_EQ(uint8_t(e[1]), 0);
    EXPECT_EQ(uint8_t(e[2]), 0);
    EXPECT_EQ(uint8_t(e[3]), 1);
    EXPECT_EQ(uint8_t(e[4]), 2);
    auto header = peek_envelope_header(e);
    ASSERT_TRUE(header);
    EXPECT_EQ(header->flags, 0x02);
    EXPECT_EQ(header->length, 258u);
    EXPECT_FALSE(peek_envelope_header("\x00\x00\x00"));
}

TEST(ConnectCodec, EndOfStreamCarriesEmptyObjectOrTheError) {
    std::string clean = encode_end_stream(std::nullopt);
    EXPECT_EQ(uint8_t(clean[0]), kEnvelopeEndStream);
    EXPECT_EQ(clean.substr(5), "{}");
    std::string failed = encode_end_stream(ConnectError{ConnectCode::NotFound, "process with pid 7 not found"});
    EXPECT_EQ(uint8_t(failed[0]), kEnvelopeEndStream);
    json body = json::parse(failed.substr(5));
    EXPECT_EQ(body["error"]["code"], "not_found");
    EXPECT_EQ(body["error"]["message"], "process with pid 7 not found");
}

TEST(ConnectCodec, MessagesRoundTrip) {
    std::string e = encode_stream_message(json{{"event", {{"start", {{"pid", 42}}}}}});
    EXPECT_EQ(uint8_t(e[0]), 0);
    auto parsed = parse_stream_request("application/connect+json", e);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ((*parsed.message)["event"]["start"]["pid"], 42);
}

TEST(ConnectCodec, CodesHaveTheProtocolsNamesAndStatuses) {
    EXPECT_STREQ(connect_code_name(ConnectCode::InvalidArgument), "invalid_argument");
    EXPECT_STREQ(connect_code_name(ConnectCode::Unauthenticated), "unauthenticated");
    EXPECT_EQ(connect_http_status(ConnectCode::NotFound), 404);
    EXPECT_EQ(connect_http_status(ConnectCode::Unimplemented), 501);
    EXPECT_EQ(connect_http_status(ConnectCode::ResourceExhausted), 429);
    EXPECT_EQ(connect_http_status(ConnectCode::Unavailable), 503);
    EXPECT_EQ(connect_error_json({ConnectCode::AlreadyExists, "m"}), (json{{"code", "already_exists"}, {"message", "m"}}));
}

TEST(ConnectCodec, UnaryRequestIsOneJsonObject) {
    auto ok = parse_unary_request("application/json; charset=utf-8", R"({"path":"/tmp"})");
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ((*ok.message)["path"], "/tmp");
    EXPECT_TRUE(parse_unary_request("Application/JSON", "").ok());  // the empty message

    auto wrong_type = parse_unary_request("application/proto", "{}");
    ASSERT_FALSE(wrong_type.ok());
    EXPECT_EQ(wrong_type.error->code, ConnectCode::InvalidArgument);
    EXPECT_NE(wrong_type.error->message.find("application/json"), std::string::npos);

    for (const char* bad : {"{", "[1]", "\"s\"", "1", "null", "{\"a\":1}{"}) {
        auto r = parse_unary_request("application/json", bad);
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_EQ(r.error->code, ConnectCode::InvalidArgument) << bad;
    }
}

TEST(ConnectCodec, OversizedMessagesAreResourceExhausted) {
    std::string big = "{\"a\":\"" + std::string(100, 'x') + "\"}";
    auto unary = parse_unary_request("application/json", big, 50);
    ASSERT_FALSE(unary.ok());
    EXPECT_EQ(unary.error->code, ConnectCode::ResourceExhausted);
    // The envelope's declared length is checked before the payload is looked at.
    std::string header("\x00\x7f\xff\xff\xff", 5);
    auto stream = parse_stream_request("application/connect+json", header + "{}");
    ASSERT_FALSE(stream.ok());
    EXPECT_EQ(stream.error->code, ConnectCode::ResourceExhausted);
}

TEST(ConnectCodec, StreamRequestIsExactlyOnePlainEnvelope) {
    EXPECT_TRUE(parse_stream_request("application/connect+json", envelope(0, "{}")).ok());
    struct Case {
        std::string body;
        ConnectCode code;
    };
    const Case cases[] = {
        {"", ConnectCode::InvalidArgument},                                   // no header
        {std::string("\x00\x00\x00", 3), ConnectCode::InvalidArgument},       // short header
        {envelope(0, "{}").substr(0, 6), ConnectCode::InvalidArgument},       // payload cut short
        {envelope(0, "{}") + envelope(0, "{}"), ConnectCode::InvalidArgument}, // two messages
        {envelope(kEnvelopeCompressed, "{}"), ConnectCode::Unimplemented},    // compressed
        {envelope(kEnvelopeEndStream, "{}"), ConnectCode::InvalidArgument},   // end-of-stream from a client
        {envelope(0, "[]"), ConnectCode::InvalidArgument},                    // not an object
        {envelope(0, "{\"a\":"), ConnectCode::InvalidArgument},               // not JSON
    };
    for (const auto& c : cases) {
        auto r = parse_stream_request("application/connect+json", c.body);
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.error->code, c.code) << r.error->message;
        EXPECT_FALSE(r.error->message.empty());
    }
    auto wrong_type = parse_stream_request("application/json", envelope(0, "{}"));
    ASSERT_FALSE(wrong_type.ok());
    EXPECT_NE(wrong_type.error->message.find("application/connect+json"), std::string::npos);
}

TEST(ConnectCodec, InvalidUtf8InAnswersIsReplacedNotThrown) {
    // Guest file names need not be UTF-8; an answer with one must still encode.
    std::string e = encode_stream_message(json{{"name", std::string("a\xff" "b")}});
    EXPECT_TRUE(json::accept(e.substr(5)));
}
