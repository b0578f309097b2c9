// Functional tests of the agent channel against hostile bytes: malformed frames, unknown ops, bad JSON.
#include "proto/wire.h"
#include "vm_test_env.h"

using namespace kiln;
using proto::FrameType;

KILN_SHARED_VM_SUITE(VmProtocol);

namespace {

// Stream ids far from the client's own (it allocates odd ids upwards from 1).
constexpr uint32_t kRawStream = 0x7ffff001;

std::string header(uint8_t version, uint8_t type, uint16_t flags, uint32_t stream, uint32_t length) {
    std::string h = proto::encode_frame(FrameType::Request, stream, "");
    h[4] = static_cast<char>(version);
    h[5] = static_cast<char>(type);
    h[6] = static_cast<char>(flags & 0xff);
    h[7] = static_cast<char>(flags >> 8);
    for (int i = 0; i < 4; ++i) h[12 + i] = static_cast<char>((length >> (8 * i)) & 0xff);
    return h;
}

}  // namespace

TEST_F(VmProtocol, MalformedFramesGetAnErrorFrameAndTheChannelKeepsWorking) {
    struct Case {
        const char* name;
        std::string bytes;
    };
    const Case cases[] = {
        {"garbage without magic", "this is not a kiln frame at all"},
        {"bad version", header(7, 1, 0, kRawStream, 2) + "{}"},
        {"unknown type", header(1, 99, 0, kRawStream, 0)},
        {"reserved flags", header(1, 1, 1, kRawStream, 2) + "{}"},
        {"oversized length", header(1, 1, 0, kRawStream, proto::kMaxPayload + 1)},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        ASSERT_TRUE(agent().send_raw(c.bytes).ok());
        auto error = agent().wait_connection_error(Millis(10000));
        ASSERT_TRUE(error.has_value()) << "no Error frame for " << c.name;
        EXPECT_EQ(error->code, ErrorCode::MalformedFrame) << error->message;
        auto ping = agent().ping(Millis(10000));
        ASSERT_TRUE(ping.ok()) << ping.error().to_string();
    }
}

TEST_F(VmProtocol, BadRequestsOnAStreamAreAnsweredOnThatStream) {
    ASSERT_TRUE(agent().send_raw(proto::encode_frame(FrameType::Request, kRawStream + 2, "{not json")).ok());
    auto e1 = agent().wait_connection_error(Millis(10000));
    ASSERT_TRUE(e1.has_value());
    EXPECT_NE(e1->message.find(std::to_string(kRawStream + 2)), std::string::npos) << e1->message;

    ASSERT_TRUE(agent().send_raw(proto::encode_frame(FrameType::Request, kRawStream + 4, R"({"op":"no_such_op"})")).ok());
    auto e2 = agent().wait_connection_error(Millis(10000));
    ASSERT_TRUE(e2.has_value());
    EXPECT_EQ(e2->code, ErrorCode::UnknownOp) << e2->message;

    ASSERT_TRUE(agent().send_raw(proto::encode_frame(FrameType::Request, kRawStream + 6, R"({"op":"exec","argv":[1]})")).ok());
    auto e3 = agent().wait_connection_error(Millis(10000));
    ASSERT_TRUE(e3.has_value());
    EXPECT_EQ(e3->code, ErrorCode::InvalidArgument) << e3->message;

    EXPECT_TRUE(agent().ping().ok());
}

TEST_F(VmProtocol, PingReportsTheAgentReady) {
    auto ping = agent().ping();
    ASSERT_TRUE(ping.ok()) << ping.error().to_string();
    EXPECT_EQ(ping->wire_version, proto::kWireVersion);
    EXPECT_TRUE(ping->ready);
    EXPECT_FALSE(ping->agent_version.empty());
}
