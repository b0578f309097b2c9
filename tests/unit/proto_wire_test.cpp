// Unit tests for the agent framing: round trips, fragmentation, limits and resynchronisation.
#include <gtest/gtest.h>

#include "proto/wire.h"

using namespace kiln::proto;

namespace {

std::vector<Frame> drain(FrameDecoder& d) {
    std::vector<Frame> frames;
    while (auto f = d.next()) frames.push_back(std::move(*f));
    return frames;
}

std::string raw_header(uint8_t version, uint8_t type, uint16_t flags, uint32_t stream, uint32_t length) {
    std::string h = encode_frame(FrameType::Request, 0, "");
    h[4] = static_cast<char>(version);
    h[5] = static_cast<char>(type);
    h[6] = static_cast<char>(flags & 0xff);
    h[7] = static_cast<char>(flags >> 8);
    for (int i = 0; i < 4; ++i) h[8 + i] = static_cast<char>((stream >> (8 * i)) & 0xff);
    for (int i = 0; i < 4; ++i) h[12 + i] = static_cast<char>((length >> (8 * i)) & 0xff);
    return h;
}

}  // namespace

TEST(Wire, HeaderLayoutIsStable) {
    std::string f = encode_frame(FrameType::Stdout, 0x01020304, "hi");
    ASSERT_EQ(f.size(), kHeaderSize + 2);
    EXPECT_EQ(f.substr(0, 4), "KILN");
    EXPECT_EQ(f[4], 1);
    EXPECT_EQ(f[5], 6);
    EXPECT_EQ(f[8], 0x04);
    EXPECT_EQ(f[11], 0x01);
    EXPECT_EQ(f[12], 2);
    EXPECT_EQ(f.substr(16), "hi");
}

TEST(Wire, RoundTripManyFramesFedByteByByte) {
    std::string stream;
    for (uint32_t i = 0; i < 50; ++i)
        encode_frame(stream, FrameType::Data, i * 2 + 1, std::string(i * 37, static_cast<char>('a' + i % 26)));
    FrameDecoder d;
    std::vector<Frame> frames;
    for (char c : stream) {
        d.feed(&c, 1);
        for (auto& f : drain(d)) frames.push_back(std::move(f));
    }
    ASSERT_EQ(frames.size(), 50u);
    for (uint32_t i = 0; i < 50; ++i) {
        EXPECT_EQ(frames[i].stream, i * 2 + 1);
        EXPECT_EQ(frames[i].type, FrameType::Data);
        EXPECT_EQ(frames[i].payload.size(), i * 37);
    }
    EXPECT_FALSE(d.next_error());
    EXPECT_EQ(d.buffered(), 0u);
}

TEST(Wire, MaxPayloadAcceptedAndOneMoreRejected) {
    FrameDecoder d;
    d.feed(encode_frame(FrameType::Data, 1, std::string(kMaxPayload, 'x')));
    auto f = d.next();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->payload.size(), kMaxPayload);

    d.feed(raw_header(kWireVersion, 8, 0, 3, kMaxPayload + 1));
    d.feed(encode_frame(FrameType::Request, 5, "{}"));
    auto next = d.next();
    ASSERT_TRUE(next);
    EXPECT_EQ(next->stream, 5u);
    auto err = d.next_error();
    ASSERT_TRUE(err);
    EXPECT_EQ(err->stream, 3u);
    EXPECT_NE(err->message.find("exceeds"), std::string::npos);
}

TEST(Wire, GarbageIsReportedOnceAndSkipped) {
    FrameDecoder d;
    d.feed(std::string(1000, '\xff'));
    d.feed(encode_frame(FrameType::Request, 7, R"({"op":"ping"})"));
    auto frames = drain(d);
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].stream, 7u);
    auto err = d.next_error();
    ASSERT_TRUE(err);
    EXPECT_EQ(err->message, "bad frame magic");
    EXPECT_FALSE(d.next_error());
}

TEST(Wire, GarbageEndingInPartialMagicStillResyncs) {
    FrameDecoder d;
    d.feed("xxxxxxxKIL");
    EXPECT_FALSE(d.next());
    d.feed(std::string("N") + encode_frame(FrameType::Request, 9, "{}").substr(4));
    auto f = d.next();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->stream, 9u);
}

TEST(Wire, BadVersionTypeAndFlagsAreErrors) {
    for (auto h : {raw_header(2, 1, 0, 1, 0), raw_header(kWireVersion, 0, 0, 1, 0), raw_header(kWireVersion, 200, 0, 1, 0),
                   raw_header(kWireVersion, 1, 4, 1, 0)}) {
        FrameDecoder d;
        d.feed(h);
        d.feed(encode_frame(FrameType::Request, 11, "{}"));
        auto f = d.next();
        ASSERT_TRUE(f);
        EXPECT_EQ(f->stream, 11u);
        EXPECT_TRUE(d.next_error());
    }
}

TEST(Wire, DecoderMemoryStaysBoundedOverALongStream) {
    FrameDecoder d;
    std::string frame = encode_frame(FrameType::Stdout, 1, std::string(60000, 'z'));
    for (int i = 0; i < 2000; ++i) {
        d.feed(frame);
        ASSERT_TRUE(d.next());
    }
    EXPECT_EQ(d.buffered(), 0u);
}
