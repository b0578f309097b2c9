// Unit tests for AgentClient: against the real agent Server in-process, and a scripted fake peer for failures.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "agent/server.h"
#include "base/file_util.h"
#include "vm/agent_client.h"

using namespace kiln;
using namespace kiln::vm;
using proto::Frame;
using proto::FrameType;
using proto::json;

namespace {

// The real agent Server on one end of a socketpair, an AgentClient on the other.
class InProcessAgent {
public:
    InProcessAgent() {
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        m_agent_fd.reset(fds[1]);
        auto server = agent::Server::create(agent::ServerConfig{});
        EXPECT_TRUE(server.ok());
        m_server = std::move(server).value();
        m_thread = std::thread([this] { m_server->run(m_agent_fd.get()); });
        client = AgentClient::adopt(UniqueFd(fds[0]));
        proto::InitRequest init;
        init.hostname = "unit";
        init.entropy_hex = std::string(128, 'a');
        EXPECT_TRUE(client->init(init).ok());
    }
    ~InProcessAgent() {
        client.reset();  // closes the host end: the server sees EOF
        m_thread.join();
    }

    std::unique_ptr<AgentClient> client;

private:
    UniqueFd m_agent_fd;
    std::unique_ptr<agent::Server> m_server;
    std::thread m_thread;
};

// A peer that reads frames and answers as the test says.
class FakePeer {
public:
    FakePeer() {
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        m_fd.reset(fds[1]);
        client = AgentClient::adopt(UniqueFd(fds[0]));
    }
    std::optional<Frame> read_frame(Millis timeout = Millis(5000)) {
        auto deadline = Clock::now() + timeout;
        for (;;) {
            if (auto f = m_decoder.next()) return f;
            if (Clock::now() >= deadline) return std::nullopt;
            char buf[4096];
            struct timeval tv{0, 100000};
            ::setsockopt(m_fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            ssize_t n = ::read(m_fd.get(), buf, sizeof buf);
            if (n > 0) m_decoder.feed(buf, static_cast<size_t>(n));
            if (n == 0) return std::nullopt;
        }
    }
    void send(FrameType type, uint32_t stream, const std::string& payload) {
        std::string bytes = proto::encode_frame(type, stream, payload);
        ASSERT_EQ(::write(m_fd.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    }
    void close() { m_fd.reset(); }

    std::unique_ptr<AgentClient> client;

private:
    UniqueFd m_fd;
    proto::FrameDecoder m_decoder;
};

std::string temp_dir() {
    char tmpl[] = "/tmp/kiln-agent-client-test-XXXXXX";
    return ::mkdtemp(tmpl) ? tmpl : "/tmp";
}

}  // namespace

TEST(AgentClient, PingAndExecAgainstTheRealServer) {
    InProcessAgent agent;
    auto ping = agent.client->ping();
    ASSERT_TRUE(ping.ok()) << ping.error().to_string();
    EXPECT_TRUE(ping->ready);
    proto::ExecRequest request;
    request.argv = {"sh", "-c", "echo out; echo err >&2; exit 7"};
    auto out = agent.client->exec_collect(request);
    ASSERT_TRUE(out.ok()) << out.error().to_string();
    EXPECT_EQ(out->stdout_data, "out\n");
    EXPECT_EQ(out->stderr_data, "err\n");
    EXPECT_EQ(out->result.exit_code, 7);
}

TEST(AgentClient, ManyConcurrentCallsAreRoutedToTheirCallers) {
    InProcessAgent agent;
    constexpr int kCount = 32;
    std::vector<std::thread> threads;
    std::vector<std::string> outputs(kCount);
    for (int i = 0; i < kCount; ++i) {
        threads.emplace_back([&, i] {
            proto::ExecRequest request;
            request.argv = {"sh", "-c", "sleep 0.2; echo $0", std::to_string(i)};
            auto out = agent.client->exec_collect(request);
            outputs[i] = out.ok() ? out->stdout_data : out.error().to_string();
        });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kCount; ++i) EXPECT_EQ(outputs[i], std::to_string(i) + "\n");
}

TEST(AgentClient, StdinFromDataAndFromAnFdThatNeverCloses) {
    InProcessAgent agent;
    proto::ExecRequest wc;
    wc.argv = {"wc", "-c"};
    auto counted = agent.client->exec_collect(wc, std::string(300000, 'z'));
    ASSERT_TRUE(counted.ok());
    EXPECT_EQ(std::stoul(counted->stdout_data), 300000u);

    // A command that ignores its stdin must not wait for an fd that stays open.
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    proto::ExecRequest t;
    t.argv = {"true"};
    ExecIo io;
    io.stdin_fd = pipe_fds[0];
    auto start = Clock::now();
    auto result = agent.client->exec(t, io);
    ASSERT_TRUE(result.ok()) << result.error().to_string();
    EXPECT_LT(std::chrono::duration_cast<Millis>(Clock::now() - start).count(), 5000);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
}

TEST(AgentClient, SlowConsumerStillGetsEveryByte) {
    InProcessAgent agent;
    proto::ExecRequest request;
    request.argv = {"head", "-c", "20000000", "/dev/zero"};
    uint64_t received = 0;
    ExecIo io;
    io.on_stdout = [&](std::string_view d) {
        received += d.size();
        if (received < 2000000) std::this_thread::sleep_for(std::chrono::microseconds(200));
    };
    auto result = agent.client->exec(request, io);
    ASSERT_TRUE(result.ok()) << result.error().to_string();
    EXPECT_EQ(received, 20000000u);
}

TEST(AgentClient, FilesRoundTrip) {
    InProcessAgent agent;
    std::string dir = temp_dir();
    std::string data(3 * AgentClient::kChunk + 123, '\0');
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131);
    auto written = agent.client->write_file(dir + "/f.bin", source_from_string(data), 0640);
    ASSERT_TRUE(written.ok()) << written.error().to_string();
    EXPECT_EQ(*written, data.size());
    std::string back;
    auto read = agent.client->read_file(dir + "/f.bin", [&](std::string_view d) {
        back.append(d);
        return ok_status();
    });
    ASSERT_TRUE(read.ok()) << read.error().to_string();
    EXPECT_TRUE(back == data);
    auto st = agent.client->stat(dir + "/f.bin");
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->mode, 0640u);
    auto list = agent.client->list(dir);
    ASSERT_TRUE(list.ok());
    EXPECT_EQ(list->size(), 1u);
    // A sink error stops the read and is returned; the connection keeps working.
    auto stopped = agent.client->read_file(dir + "/f.bin", [](std::string_view) { return Status(make_error(ErrorCode::ResourceExhausted, "sink full")); });
    ASSERT_FALSE(stopped.ok());
    EXPECT_EQ(stopped.error().code, ErrorCode::ResourceExhausted);
    EXPECT_TRUE(agent.client->ping().ok());
    EXPECT_TRUE(agent.client->remove(proto::RemoveRequest{dir, true}).ok());
}

TEST(AgentClient, MoveListDepthAndWatchUntilStopped) {
    InProcessAgent agent;
    std::string dir = temp_dir();
    proto::WriteRequest write{dir + "/a/b/f.txt", 0600, true, {}};
    ASSERT_TRUE(agent.client->write_file(write, source_from_string("hi")).ok());
    ASSERT_TRUE(agent.client->move(dir + "/a/b/f.txt", dir + "/a/g.txt").ok());
    auto missing = agent.client->move(dir + "/a/b/f.txt", dir + "/x");
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
    auto deep = agent.client->list(proto::ListRequest{dir, 3});
    ASSERT_TRUE(deep.ok()) << deep.error().to_string();
    std::vector<std::string> paths;
    for (const auto& e : *deep) paths.push_back(e.path);
    EXPECT_EQ(paths, (std::vector<std::string>{dir + "/a", dir + "/a/b", dir + "/a/g.txt"}));

    std::atomic<bool> stop{false}, started{false};
    std::mutex mutex;
    std::vector<proto::WatchEvent> events;
    Status watched = ok_status();
    std::thread watcher([&] {
        watched = agent.client->watch(
            dir + "/a", true,
            [&](const proto::WatchEvent& e) {
                std::lock_guard lock(mutex);
                events.push_back(e);
            },
            stop, [&] { started = true; });
    });
    for (int i = 0; i < 500 && !started; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(started);
    ASSERT_TRUE(agent.client->write_file(dir + "/a/b/new.txt", source_from_string("x")).ok());
    auto seen = [&] {
        std::lock_guard lock(mutex);
        for (const auto& e : events)
            if (e.name == "b/new.txt" && e.type == "create") return true;
        return false;
    };
    for (int i = 0; i < 500 && !seen(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(seen());
    stop = true;
    watcher.join();
    EXPECT_TRUE(watched.ok()) << watched.error().to_string();
    EXPECT_TRUE(agent.client->ping().ok());

    // The folder going away ends the watch with the agent's error.
    std::atomic<bool> never{false};
    std::atomic<bool> live{false};
    Status gone = ok_status();
    std::thread ending([&] { gone = agent.client->watch(dir + "/a/b", false, {}, never, [&] { live = true; }); });
    for (int i = 0; i < 500 && !live; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(agent.client->remove(proto::RemoveRequest{dir + "/a/b", true}).ok());
    ending.join();
    ASSERT_FALSE(gone.ok());
    EXPECT_EQ(gone.error().code, ErrorCode::NotFound);
    EXPECT_TRUE(agent.client->remove(proto::RemoveRequest{dir, true}).ok());
}

TEST(AgentClient, AHostileWatchEventIsAProtocolErrorAndTheWatchIsDetached) {
    FakePeer peer;
    std::atomic<bool> stop{false};
    Status result = ok_status();
    std::thread watcher([&] { result = peer.client->watch("/w", false, {}, stop); });
    auto request = peer.read_frame();
    ASSERT_TRUE(request && request->type == FrameType::Request);
    peer.send(FrameType::Data, request->stream, R"({"name":"f","type":"explode"})");
    auto detach = peer.read_frame();
    ASSERT_TRUE(detach);
    EXPECT_EQ(detach->type, FrameType::Detach);
    EXPECT_EQ(detach->stream, request->stream);
    watcher.join();
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().code, ErrorCode::ProtocolError);
}

TEST(AgentClient, HostTimeoutEndsTheCall) {
    InProcessAgent agent;
    proto::ExecRequest request;
    request.argv = {"sleep", "30"};
    ExecIo io;
    io.host_timeout = Millis(300);
    auto start = Clock::now();
    auto result = agent.client->exec(request, io);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().code, ErrorCode::Timeout);
    EXPECT_LT(std::chrono::duration_cast<Millis>(Clock::now() - start).count(), 3000);
    EXPECT_TRUE(agent.client->ping().ok());
}

TEST(AgentClient, RepliesAreRoutedByStreamNotByOrder) {
    FakePeer peer;
    std::atomic<int> done{0};
    Result<proto::PingResult> first = make_error(ErrorCode::Internal, "unset"), second = make_error(ErrorCode::Internal, "unset");
    std::thread a([&] { first = peer.client->ping(); ++done; });
    auto fa = peer.read_frame();
    ASSERT_TRUE(fa);
    std::thread b([&] { second = peer.client->ping(); ++done; });
    auto fb = peer.read_frame();
    ASSERT_TRUE(fb);
    EXPECT_NE(fa->stream, fb->stream);
    EXPECT_EQ(fa->stream % 2, 1u);
    peer.send(FrameType::Result, fb->stream, R"({"agent_version":"second"})");
    peer.send(FrameType::Result, fa->stream, R"({"agent_version":"first"})");
    a.join();
    b.join();
    ASSERT_TRUE(first.ok());
    ASSERT_TRUE(second.ok());
    EXPECT_EQ(first->agent_version, "first");
    EXPECT_EQ(second->agent_version, "second");
}

TEST(AgentClient, StreamZeroErrorsAreConnectionErrors) {
    FakePeer peer;
    peer.send(FrameType::Error, 0, proto::make_error_body(ErrorCode::MalformedFrame, "bad magic").dump());
    auto e = peer.client->wait_connection_error(Millis(5000));
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->code, ErrorCode::MalformedFrame);
    EXPECT_FALSE(peer.client->wait_connection_error(Millis(10)).has_value());
}

TEST(AgentClient, ADroppedConnectionFailsPendingAndLaterCallsWithTheOwnersReason) {
    FakePeer peer;
    peer.client->set_gone_reason([] { return make_error(ErrorCode::VmGone, "QEMU exited with status 1"); });
    Result<proto::PingResult> pending = make_error(ErrorCode::Internal, "unset");
    std::thread t([&] { pending = peer.client->ping(Millis(60000)); });
    ASSERT_TRUE(peer.read_frame());
    auto start = Clock::now();
    peer.close();
    t.join();
    EXPECT_LT(std::chrono::duration_cast<Millis>(Clock::now() - start).count(), 2000);
    ASSERT_FALSE(pending.ok());
    EXPECT_EQ(pending.error().code, ErrorCode::VmGone);
    EXPECT_EQ(pending.error().message, "QEMU exited with status 1");
    auto later = peer.client->exec(proto::ExecRequest{.argv = {"true"}});
    ASSERT_FALSE(later.ok());
    EXPECT_EQ(later.error().message, "QEMU exited with status 1");
    EXPECT_FALSE(peer.client->alive());
}

TEST(AgentClient, FailAllEndsEveryPendingCall) {
    FakePeer peer;
    std::vector<std::thread> threads;
    std::atomic<int> gone{0};
    for (int i = 0; i < 8; ++i)
        threads.emplace_back([&] {
            auto r = peer.client->exec(proto::ExecRequest{.argv = {"sleep", "100"}});
            if (!r.ok() && r.error().code == ErrorCode::VmGone) ++gone;
        });
    for (int i = 0; i < 8; ++i) ASSERT_TRUE(peer.read_frame());
    peer.client->fail_all(make_error(ErrorCode::VmGone, "the guest kernel panicked: Kernel panic - not syncing: test"));
    for (auto& t : threads) t.join();
    EXPECT_EQ(gone.load(), 8);
}

TEST(AgentClient, LateFramesForAbandonedStreamsAreDropped) {
    FakePeer peer;
    auto r = peer.client->ping(Millis(100));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::Timeout);
    auto req = peer.read_frame();
    ASSERT_TRUE(req);
    peer.send(FrameType::Result, req->stream, "{}");  // too late: nobody waits
    std::thread t([&] {
        auto f = peer.read_frame();
        if (f) peer.send(FrameType::Result, f->stream, R"({"agent_version":"fresh"})");
    });
    auto fresh = peer.client->ping();
    t.join();
    ASSERT_TRUE(fresh.ok()) << fresh.error().to_string();
    EXPECT_EQ(fresh->agent_version, "fresh");
}

// A hostile guest stops reading in the middle of an upload: the frame cannot be abandoned half
// written, so after the frame timeout the connection ends for every call, with a reason.
TEST(AgentClient, AGuestThatStopsReadingMidUploadEndsTheConnectionWithinTheFrameTimeout) {
    FakePeer peer;
    peer.client->set_frame_send_timeout(Millis(300));
    auto start = Clock::now();
    // 16 MiB: far more than the socketpair's buffers hold; the peer never reads a byte.
    auto written = peer.client->write_file("/big", source_from_string(std::string(16u << 20, 'x')));
    auto took = std::chrono::duration_cast<Millis>(Clock::now() - start).count();
    ASSERT_FALSE(written.ok());
    EXPECT_EQ(written.error().code, ErrorCode::VmGone);
    EXPECT_NE(written.error().message.find("the guest stopped reading"), std::string::npos) << written.error().message;
    EXPECT_NE(written.error().message.find("0.3 s (agent_send_timeout)"), std::string::npos) << written.error().message;
    EXPECT_LT(took, 3000);
    EXPECT_FALSE(peer.client->alive());
    auto later = peer.client->ping();
    ASSERT_FALSE(later.ok());
    EXPECT_EQ(later.error().message, written.error().message);
}

// The stdin pump used to send with no deadline at all: an exec without a timeout whose guest
// stopped reading its stdin held the pump thread, and the caller joining it, forever.
TEST(AgentClient, AGuestThatStopsReadingStdinDoesNotHoldTheExecForever) {
    FakePeer peer;
    peer.client->set_frame_send_timeout(Millis(300));
    Result<proto::ExecResult> result = make_error(ErrorCode::Internal, "unset");
    auto start = Clock::now();
    std::thread t([&] {
        ExecIo io;
        io.stdin_data = std::string(16u << 20, 'i');
        result = peer.client->exec(proto::ExecRequest{.argv = {"cat"}}, io);  // no timeout: the host waits forever
    });
    auto request = peer.read_frame();  // the Request frame; then the peer reads nothing more
    ASSERT_TRUE(request);
    EXPECT_EQ(request->type, FrameType::Request);
    t.join();
    EXPECT_LT(std::chrono::duration_cast<Millis>(Clock::now() - start).count(), 3000);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().code, ErrorCode::VmGone);
    EXPECT_NE(result.error().message.find("the guest stopped reading"), std::string::npos) << result.error().message;
}

// A guest that keeps reading, however slowly, is not cut off: each frame gets the whole timeout.
TEST(AgentClient, ASlowButReadingGuestKeepsItsConnection) {
    FakePeer peer;
    peer.client->set_frame_send_timeout(Millis(2000));
    Result<uint64_t> written = make_error(ErrorCode::Internal, "unset");
    std::thread t([&] { written = peer.client->write_file("/slow", source_from_string(std::string(1u << 20, 's'))); });
    // Read everything, pausing 200 ms between frames (longer than a frame takes on its own).
    uint64_t data = 0;
    for (;;) {
        auto f = peer.read_frame();
        ASSERT_TRUE(f);
        if (f->type == FrameType::Data) {
            data += f->payload.size();
            std::this_thread::sleep_for(Millis(data % (256 * 1024) == 0 ? 200 : 0));
        }
        if (f->type == FrameType::Eof) {
            peer.send(FrameType::Result, f->stream, R"({"size":1048576})");
            break;
        }
    }
    t.join();
    ASSERT_TRUE(written.ok()) << written.error().to_string();
    EXPECT_EQ(*written, 1u << 20);
    EXPECT_TRUE(peer.client->alive());
}
