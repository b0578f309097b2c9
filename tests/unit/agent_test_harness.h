// AgentHarness: runs an agent Server (not PID 1) in a thread over a socketpair and plays the host side.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "agent/server.h"
#include "proto/messages.h"
#include "proto/wire.h"

namespace kiln::agent::testing {

using nlohmann::json;
using proto::Frame;
using proto::FrameType;

// Everything the agent sent on one stream, up to and including its Result or Error frame.
struct StreamReply {
    std::vector<Frame> frames;
    std::string out;  // Stdout payloads, concatenated
    std::string err;  // Stderr payloads
    std::string data; // Data payloads
    FrameType end_type = FrameType::Error;
    json body;        // the Result or Error body
    bool timed_out = false;

    bool ok() const { return end_type == FrameType::Result && !timed_out; }
    // The code of an Error frame, read from the wire string (nullopt: not an error, or a code
    // that is not an ErrorCode name).
    std::optional<ErrorCode> error_code() const {
        return end_type == FrameType::Error ? parse_error_code(body.value("code", "")) : std::nullopt;
    }
};

class AgentHarness {
public:
    explicit AgentHarness(bool init = true, ServerConfig config = {}) {
        int fds[2];
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        m_host_fd = fds[0];
        m_agent_fd = fds[1];
        auto server = Server::create(std::move(config));
        EXPECT_TRUE(server.ok());
        m_server = std::move(server).value();
        m_thread = std::thread([this] { m_end = m_server->run(m_agent_fd); });
        if (init) {
            auto reply = call(proto::op::kInit, json{{"hostname", "test"}, {"entropy_hex", std::string(128, 'a')}});
            EXPECT_TRUE(reply.ok()) << reply.body.dump();
        }
    }
    ~AgentHarness() { stop(); }

    // Closes the host end and waits for run() to return.
    RunEnd stop() {
        if (m_host_fd >= 0) {
            close(m_host_fd);
            m_host_fd = -1;
        }
        if (m_thread.joinable()) m_thread.join();
        if (m_agent_fd >= 0) {
            close(m_agent_fd);
            m_agent_fd = -1;
        }
        return m_end;
    }
    // Waits for run() to return by itself (e.g. after shutdown).
    RunEnd join() {
        if (m_thread.joinable()) m_thread.join();
        return m_end;
    }

    void send_raw(const std::string& bytes) {
        size_t off = 0;
        while (off < bytes.size()) {
            ssize_t n = ::write(m_host_fd, bytes.data() + off, bytes.size() - off);
            if (n < 0 && errno == EINTR) continue;
            ASSERT_GT(n, 0) << "write to the agent failed";
            off += static_cast<size_t>(n);
        }
    }
    void send(FrameType type, uint32_t stream, const std::string& payload = "") {
        send_raw(proto::encode_frame(type, stream, payload));
    }
    void request(uint32_t stream, const char* op, json fields = json::object()) {
        send(FrameType::Request, stream, proto::make_request(op, std::move(fields)).dump());
    }

    // The next frame on `stream` (frames of other streams are kept for later). Gives up at the
    // deadline even while frames of other streams keep arriving.
    std::optional<Frame> next_frame(uint32_t stream, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (auto it = m_pending.find(stream); it != m_pending.end() && !it->second.empty()) {
                Frame f = std::move(it->second.front());
                it->second.pop_front();
                return f;
            }
            if (std::chrono::steady_clock::now() >= deadline || !pump(deadline)) return std::nullopt;
        }
    }

    // Collects a stream until its Result or Error.
    StreamReply collect(uint32_t stream, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        StreamReply reply;
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            auto f = next_frame(stream, std::max(left, std::chrono::milliseconds(0)));
            if (!f) {
                reply.timed_out = true;
                ADD_FAILURE() << "no end of stream " << stream << " in time";
                return reply;
            }
            if (f->type == FrameType::Stdout) reply.out += f->payload;
            if (f->type == FrameType::Stderr) reply.err += f->payload;
            if (f->type == FrameType::Data) reply.data += f->payload;
            reply.frames.push_back(*f);
            if (f->type == FrameType::Result || f->type == FrameType::Error) {
                reply.end_type = f->type;
                reply.body = json::parse(f->payload, nullptr, false);
                return reply;
            }
        }
    }

    StreamReply call(const char* op, json fields = json::object()) {
        uint32_t stream = next_stream();
        request(stream, op, std::move(fields));
        return collect(stream);
    }

    uint32_t next_stream() {
        m_stream += 2;
        return m_stream;
    }

    Server& server() { return *m_server; }
    int host_fd() const { return m_host_fd; }

private:
    // Reads what the agent sent, until at least one new frame or the deadline.
    bool pump(std::chrono::steady_clock::time_point deadline) {
        for (;;) {
            bool decoded = false;
            while (auto f = m_decoder.next()) {
                uint32_t stream = f->stream;
                m_pending[stream].push_back(std::move(*f));
                decoded = true;
            }
            if (auto e = m_decoder.next_error()) ADD_FAILURE() << "the agent sent a malformed frame: " << e->message;
            if (decoded) return true;
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            pollfd p{m_host_fd, POLLIN, 0};
            if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
            char buf[65536];
            ssize_t n = ::read(m_host_fd, buf, sizeof buf);
            if (n <= 0) return false;
            m_decoder.feed(buf, static_cast<size_t>(n));
        }
    }

    int m_host_fd = -1;
    int m_agent_fd = -1;
    std::unique_ptr<Server> m_server;
    std::thread m_thread;
    RunEnd m_end = RunEnd::Disconnected;
    proto::FrameDecoder m_decoder;
    std::map<uint32_t, std::deque<Frame>> m_pending;  // by stream, in arrival order
    uint32_t m_stream = 1;
};

// A process is gone when it no longer exists or is a zombie waiting for someone else's wait().
inline bool process_gone(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    if (!stat) return true;
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

inline bool wait_gone(pid_t pid, int ms = 3000) {
    for (int i = 0; i < ms / 10; ++i) {
        if (process_gone(pid)) return true;
        usleep(10000);
    }
    return false;
}

// A fresh folder under /tmp, removed with everything in it at the end of the test.
class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/kiln-agent-test-XXXXXX";
        char* p = mkdtemp(tmpl);
        EXPECT_NE(p, nullptr);
        m_path = p ? p : "/tmp";
    }
    ~TempDir() { (void)!system(("rm -rf '" + m_path + "'").c_str()); }
    const std::string& path() const { return m_path; }
    std::string operator/(const std::string& name) const { return m_path + "/" + name; }

private:
    std::string m_path;
};

}  // namespace kiln::agent::testing
