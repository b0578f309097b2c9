// libFuzzer target: the host's agent client (src/vm/agent_client.cpp) against a hostile guest
// agent, over a socketpair: frame routing by stream id and the per-call backpressure. Six calls
// run at once (exec with stdin, a file read whose sink may stall or fail, ping, a file write, the
// kept-process listing and an attach), each opened only after the previous one's Request arrived,
// so their stream ids are 1, 3, 5, 7, 9, 11.
// The input then scripts what the "agent" sends: frames of any type on those streams or others,
// bulk output (up to 8 MiB, past the 4 MiB a call may queue), final frames with any payload, and
// raw junk; then it hangs up. Checks: no crash and no exception, every call returns once the
// agent is gone (none waits forever in backpressure), collected output respects its cap, and
// the connection-error queue stays bounded.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fuzz_support.h"
#include "proto/wire.h"
#include "vm/agent_client.h"

using namespace kiln;
using namespace kiln::vm;
using kiln::fuzz::check;

namespace {

constexpr size_t kMaxOutput = 4096;
constexpr size_t kMaxBulk = 8 << 20;

// The guest end: drains everything the client sends (so the client never blocks on a full
// socket) and notes the stream of each Request.
class FakeAgent {
public:
    explicit FakeAgent(int fd) : m_fd(fd), m_thread([this] { drain(); }) {}
    ~FakeAgent() {
        ::shutdown(m_fd, SHUT_RDWR);
        m_thread.join();
    }
    // Waits until `n` requests arrived (or a second passed: the client may have failed early).
    void wait_requests(size_t n) {
        std::unique_lock lock(m_mutex);
        m_cv.wait_for(lock, std::chrono::seconds(1), [&] { return m_requests.size() >= n || m_closed; });
    }
    uint32_t stream_of(size_t call) {
        std::lock_guard lock(m_mutex);
        return call < m_requests.size() ? m_requests[call] : static_cast<uint32_t>(1 + 2 * call);
    }
    void send(const std::string& bytes) {
        size_t done = 0;
        while (done < bytes.size()) {
            ssize_t n = ::send(m_fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
            if (n <= 0) return;
            done += static_cast<size_t>(n);
        }
    }

private:
    void drain() {
        proto::FrameDecoder decoder;
        char buf[65536];
        for (;;) {
            ssize_t n = ::read(m_fd, buf, sizeof buf);
            if (n <= 0) break;
            decoder.feed(buf, static_cast<size_t>(n));
            while (auto frame = decoder.next()) {
                if (frame->type != proto::FrameType::Request) continue;
                std::lock_guard lock(m_mutex);
                m_requests.push_back(frame->stream);
                m_cv.notify_all();
            }
            while (decoder.next_error()) {
            }
        }
        std::lock_guard lock(m_mutex);
        m_closed = true;
        m_cv.notify_all();
    }

    int m_fd;
    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::vector<uint32_t> m_requests;
    bool m_closed = false;
    std::thread m_thread;
};

// A frame header with any type byte (unknown types included).
std::string frame(uint8_t type, uint32_t stream, std::string_view payload) {
    std::string out(proto::kHeaderSize, '\0');
    uint32_t magic = proto::kMagic, length = static_cast<uint32_t>(payload.size());
    std::memcpy(out.data(), &magic, 4);
    out[4] = static_cast<char>(proto::kWireVersion);
    out[5] = static_cast<char>(type);
    std::memcpy(out.data() + 8, &stream, 4);
    std::memcpy(out.data() + 12, &length, 4);
    out.append(payload);
    return out;
}

class Input {
public:
    Input(const uint8_t* data, size_t size) : m_data(data), m_size(size) {}
    bool done() const { return m_pos >= m_size; }
    uint8_t byte() { return m_pos < m_size ? m_data[m_pos++] : 0; }
    std::string bytes(size_t n) {
        n = std::min(n, m_size - m_pos);
        std::string out(reinterpret_cast<const char*>(m_data) + m_pos, n);
        m_pos += n;
        return out;
    }

private:
    const uint8_t* m_data;
    size_t m_size;
    size_t m_pos = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Input in(data, size);
    const uint8_t flags = in.byte();
    const bool stall_reader = flags & 1;  // the read's sink stops taking data for a while
    const size_t fail_read_after = (flags & 2) ? size_t(flags >> 2) * 1024 : SIZE_MAX;  // then it gives up

    int sv[2];
    check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    auto client = AgentClient::adopt(UniqueFd(sv[0]));
    UniqueFd agent_fd(sv[1]);
    FakeAgent agent(agent_fd.get());

    std::mutex script_mutex;
    std::condition_variable script_cv;
    bool script_done = false;

    std::vector<std::thread> calls;
    calls.emplace_back([&] {
        proto::ExecRequest req;
        req.argv = {"sh"};
        auto out = client->exec_collect(req, std::string("stdin for the exec"), kMaxOutput);
        if (out.ok()) check(out->stdout_data.size() <= kMaxOutput && out->stderr_data.size() <= kMaxOutput);
    });
    agent.wait_requests(1);
    calls.emplace_back([&] {
        size_t got = 0;
        bool stalled = false;
        (void)client->read_file("/f", [&](std::string_view d) -> Status {
            if (stall_reader && !stalled) {  // long enough for the queue to pass its cap
                stalled = true;
                std::unique_lock lock(script_mutex);
                script_cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return script_done; });
            }
            got += d.size();
            if (got > fail_read_after) return make_error(ErrorCode::TooLarge, "enough");
            return ok_status();
        }, Millis(10000));
    });
    agent.wait_requests(2);
    calls.emplace_back([&] { (void)client->ping(Millis(10000)); });
    agent.wait_requests(3);
    calls.emplace_back([&] { (void)client->write_file("/w", source_from_string(std::string(100000, 'w')), 0644, Millis(10000)); });
    agent.wait_requests(4);
    calls.emplace_back([&] {
        auto list = client->processes(Millis(10000));
        if (list.ok()) check(list->size() <= 1000000);
    });
    agent.wait_requests(5);
    calls.emplace_back([&] {
        size_t seen = 0;
        ExecIo io;
        io.on_stdout = [&](std::string_view d) { seen += d.size(); };
        io.on_stderr = [&](std::string_view d) { seen += d.size(); };
        (void)client->attach(42, io);
    });
    agent.wait_requests(6);

    size_t bulk = 0;
    while (!in.done()) {
        uint8_t op = in.byte();
        uint8_t selector = in.byte();
        // Mostly the calls' streams; sometimes any id (0, even ids, ids no call has).
        uint32_t stream = selector < 0xc0 ? agent.stream_of(selector % 6) : uint32_t(selector - 0xc0) * 0x01000001u;
        switch (op % 5) {
        case 0: {  // one frame of any type
            uint8_t type = in.byte();
            agent.send(frame(type, stream, in.bytes(in.byte())));
            break;
        }
        case 1: {  // bulk output or data in full-size frames
            size_t frames = in.byte() % 40;
            std::string payload(proto::kMaxPayload, 'x');
            uint8_t type = (op & 8) ? uint8_t(proto::FrameType::Data) : uint8_t(proto::FrameType::Stdout);
            for (size_t i = 0; i < frames && bulk + payload.size() <= kMaxBulk; ++i, bulk += payload.size())
                agent.send(frame(type, stream, payload));
            break;
        }
        case 2:  // junk the decoder must resynchronise after
            agent.send(in.bytes(in.byte()));
            break;
        case 3:  // a final frame with any JSON-ish payload
            agent.send(frame(uint8_t(proto::FrameType::Result), stream, in.bytes(in.byte())));
            break;
        case 4:
            agent.send(frame(uint8_t(proto::FrameType::Error), stream, in.bytes(in.byte())));
            break;
        }
    }
    {
        std::lock_guard lock(script_mutex);
        script_done = true;
    }
    script_cv.notify_all();
    ::shutdown(agent_fd.get(), SHUT_RDWR);  // the agent hangs up: every call must end now
    for (auto& t : calls) t.join();
    for (int i = 0; i < 300 && client->wait_connection_error(Millis(0)); ++i) {
    }
    check(!client->wait_connection_error(Millis(0)));  // at most 256 were kept
    return 0;
}
