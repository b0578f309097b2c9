// Agent server tests over a socketpair: ping, readiness gating, malformed frames, stream rules, shutdown.
#include <signal.h>

#include "agent_test_harness.h"

using namespace kiln;
using namespace kiln::agent;
using namespace kiln::agent::testing;

namespace {

std::string header(uint8_t version, uint8_t type, uint16_t flags, uint32_t stream, uint32_t length) {
    std::string h = proto::encode_frame(FrameType::Request, 0, "");
    h[4] = static_cast<char>(version);
    h[5] = static_cast<char>(type);
    h[6] = static_cast<char>(flags & 0xff);
    h[7] = static_cast<char>(flags >> 8);
    for (int i = 0; i < 4; ++i) h[8 + i] = static_cast<char>((stream >> (8 * i)) & 0xff);
    for (int i = 0; i < 4; ++i) h[12 + i] = static_cast<char>((length >> (8 * i)) & 0xff);
    return h;
}

void expect_ping_works(AgentHarness& agent) {
    auto reply = agent.call(proto::op::kPing);
    ASSERT_TRUE(reply.ok()) << reply.body.dump();
    EXPECT_TRUE(proto::parse_ping_result(reply.body).ok());
}

}  // namespace

TEST(AgentServer, PingReportsVersionReadinessAndUptime) {
    AgentHarness agent(/*init=*/false);
    auto reply = agent.call(proto::op::kPing);
    ASSERT_TRUE(reply.ok());
    auto ping = proto::parse_ping_result(reply.body);
    ASSERT_TRUE(ping.ok());
    EXPECT_EQ(ping->wire_version, proto::kWireVersion);
    EXPECT_FALSE(ping->agent_version.empty());
    EXPECT_FALSE(ping->ready);
    EXPECT_GT(ping->uptime_ms, 0u);
}

TEST(AgentServer, RefusesExecAndFilesUntilInitAndAgainAfterFreeze) {
    AgentHarness agent(/*init=*/false);
    for (const char* op : {proto::op::kExec, proto::op::kRead, proto::op::kWrite, proto::op::kStat, proto::op::kList,
                           proto::op::kMkdir, proto::op::kRemove}) {
        auto reply = agent.call(op, json{{"path", "/tmp"}, {"argv", {"true"}}});
        EXPECT_EQ(reply.error_code(), ErrorCode::NotReady) << op;
    }
    EXPECT_FALSE(agent.server().ready());
    auto init = agent.call(proto::op::kInit, json{{"hostname", "x"}, {"entropy_hex", "00ff"}});
    ASSERT_TRUE(init.ok()) << init.body.dump();
    EXPECT_TRUE(agent.call(proto::op::kStat, json{{"path", "/tmp"}}).ok());
    auto ping = proto::parse_ping_result(agent.call(proto::op::kPing).body);
    EXPECT_TRUE(ping->ready);

    ASSERT_TRUE(agent.call(proto::op::kFreeze).ok());
    EXPECT_EQ(agent.call(proto::op::kStat, json{{"path", "/tmp"}}).error_code(), ErrorCode::NotReady);
    EXPECT_FALSE(proto::parse_ping_result(agent.call(proto::op::kPing).body)->ready);
}

TEST(AgentServer, InitRejectsInvalidFields) {
    AgentHarness agent(/*init=*/false);
    EXPECT_EQ(agent.call(proto::op::kInit, json{{"entropy_hex", "xyz"}}).error_code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kInit, json{{"hostname", "bad host"}}).error_code(), ErrorCode::InvalidArgument);
    EXPECT_FALSE(agent.server().ready());
}

TEST(AgentServer, GarbageBytesGetAnErrorOnStreamZeroAndServingGoesOn) {
    AgentHarness agent;
    agent.send_raw("this is not a frame at all, just noise");
    auto error = agent.next_frame(0);
    ASSERT_TRUE(error);
    EXPECT_EQ(error->type, FrameType::Error);
    EXPECT_EQ(proto::parse_error_body(error->payload).code, ErrorCode::MalformedFrame);
    expect_ping_works(agent);
}

TEST(AgentServer, BadVersionIsMalformed) {
    AgentHarness agent;
    agent.send_raw(header(7, 1, 0, 5, 2) + "{}");
    auto error = agent.next_frame(0);
    ASSERT_TRUE(error);
    EXPECT_EQ(proto::parse_error_body(error->payload).code, ErrorCode::MalformedFrame);
    expect_ping_works(agent);
}

TEST(AgentServer, OversizedLengthIsMalformedOnItsStream) {
    AgentHarness agent;
    agent.send_raw(header(1, 1, 0, 9, proto::kMaxPayload + 1));
    auto error = agent.next_frame(9);
    ASSERT_TRUE(error);
    EXPECT_EQ(error->type, FrameType::Error);
    auto body = proto::parse_error_body(error->payload);
    EXPECT_EQ(body.code, ErrorCode::MalformedFrame);
    EXPECT_NE(body.message.find("exceeds"), std::string::npos) << body.message;
    expect_ping_works(agent);
}

TEST(AgentServer, MalformedFrameOnAnActiveStreamEndsThatStream) {
    AgentHarness agent;
    uint32_t stream = agent.next_stream();
    agent.request(stream, proto::op::kExec, json{{"argv", {"sleep", "100"}}});
    auto started = agent.next_frame(stream);
    ASSERT_TRUE(started);
    ASSERT_EQ(started->type, FrameType::Started);
    agent.send_raw(header(1, 77, 0, stream, 0));  // unknown frame type, readable header
    auto reply = agent.collect(stream);
    EXPECT_EQ(reply.error_code(), ErrorCode::MalformedFrame);
    expect_ping_works(agent);
}

TEST(AgentServer, BadJsonAndBadRequestsGetErrorsOnTheirStream) {
    AgentHarness agent;
    agent.send(FrameType::Request, 11, "{not json");
    auto reply = agent.collect(11);
    EXPECT_EQ(reply.error_code(), ErrorCode::InvalidArgument);
    EXPECT_NE(reply.body.value("message", "").find("JSON"), std::string::npos);

    agent.send(FrameType::Request, 13, "[1,2]");
    EXPECT_EQ(agent.collect(13).error_code(), ErrorCode::InvalidArgument);
    agent.send(FrameType::Request, 15, R"({"no_op": 1})");
    EXPECT_EQ(agent.collect(15).error_code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call("teleport").error_code(), ErrorCode::UnknownOp);
    EXPECT_EQ(agent.call(proto::op::kExec, json{{"argv", "not-a-list"}}).error_code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kExec, json{{"argv", {"true"}}, {"cwd", "/no/such/dir"}}).error_code(),
              ErrorCode::NotFound);

    agent.send(FrameType::Request, 0, proto::make_request(proto::op::kPing).dump());
    auto zero = agent.next_frame(0);
    ASSERT_TRUE(zero);
    EXPECT_EQ(zero->type, FrameType::Error);
    EXPECT_EQ(proto::parse_error_body(zero->payload).code, ErrorCode::InvalidArgument);
    expect_ping_works(agent);
}

TEST(AgentServer, RequestOnAnActiveStreamIsStreamInUse) {
    AgentHarness agent;
    uint32_t stream = agent.next_stream();
    agent.request(stream, proto::op::kExec, json{{"argv", {"sleep", "100"}}});
    ASSERT_EQ(agent.next_frame(stream)->type, FrameType::Started);
    agent.request(stream, proto::op::kPing);
    auto in_use = agent.next_frame(stream);
    ASSERT_TRUE(in_use);
    EXPECT_EQ(proto::parse_error_body(in_use->payload).code, ErrorCode::StreamInUse);
    // The exec is untouched and still answers a signal.
    agent.send(FrameType::Signal, stream, R"({"signal": 9})");
    auto reply = agent.collect(stream);
    ASSERT_TRUE(reply.ok());
    EXPECT_EQ(reply.body["signal"], 9);
}

TEST(AgentServer, TooManyStreams) {
    TempDir dir;
    AgentHarness agent;
    std::vector<uint32_t> streams;
    for (size_t i = 0; i < proto::kMaxStreams; ++i) {
        uint32_t s = agent.next_stream();
        agent.request(s, proto::op::kWrite, json{{"path", dir / (std::to_string(i) + ".part")}});
        streams.push_back(s);
    }
    auto reply = agent.call(proto::op::kWrite, json{{"path", dir / "one-too-many"}});
    EXPECT_EQ(reply.error_code(), ErrorCode::TooManyStreams);
    expect_ping_works(agent);  // one-shot requests hold no stream and still work
    // Ending one stream frees a slot.
    agent.send(FrameType::Eof, streams[0]);
    ASSERT_TRUE(agent.collect(streams[0]).ok());
    expect_ping_works(agent);
    // Disconnecting abandons the rest: their temp files are gone.
    agent.stop();
    auto left = system(("test $(ls -A '" + dir.path() + "' | wc -l) = 1").c_str());
    EXPECT_EQ(left, 0) << "temp files left behind";
}

TEST(AgentServer, ResetAbandonsEveryStream) {
    TempDir dir;
    AgentHarness agent;
    uint32_t exec_stream = agent.next_stream();
    agent.request(exec_stream, proto::op::kExec, json{{"argv", {"sleep", "100"}}});
    auto started = agent.next_frame(exec_stream);
    ASSERT_TRUE(started);
    pid_t pid = json::parse(started->payload)["pid"];
    uint32_t write_stream = agent.next_stream();
    agent.request(write_stream, proto::op::kWrite, json{{"path", dir / "partial"}});
    agent.send(FrameType::Data, write_stream, "abc");
    auto reply = agent.call(proto::op::kReset);
    ASSERT_TRUE(reply.ok()) << reply.body.dump();
    EXPECT_EQ(reply.body["abandoned"], 2);
    EXPECT_TRUE(agent.call(proto::op::kList, json{{"path", dir.path()}}).body["entries"].empty());
    for (int i = 0; i < 300 && kill(pid, 0) == 0; ++i) usleep(10000);
    EXPECT_NE(kill(pid, 0), 0) << "the exec survived the reset";
    // The stream ids are free again.
    agent.request(exec_stream, proto::op::kPing);
    EXPECT_TRUE(agent.collect(exec_stream).ok());
}

TEST(AgentServer, ShutdownAnswersThenEndsRun) {
    AgentHarness agent;
    auto reply = agent.call(proto::op::kShutdown);
    ASSERT_TRUE(reply.ok());
    EXPECT_EQ(agent.join(), RunEnd::Shutdown);
}

TEST(AgentServer, DisconnectEndsRunAndTheServerServesTheNextConnection) {
    auto server = Server::create(ServerConfig{});
    ASSERT_TRUE(server.ok());
    for (int round = 0; round < 2; ++round) {
        int fds[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        std::string frame = proto::encode_frame(FrameType::Request, 1, proto::make_request(proto::op::kPing).dump());
        ASSERT_EQ(write(fds[0], frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
        shutdown(fds[0], SHUT_WR);  // the agent reads the request, then EOF
        EXPECT_EQ((*server)->run(fds[1]), RunEnd::Disconnected);
        close(fds[0]);
        close(fds[1]);
    }
}
