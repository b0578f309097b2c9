// AgentClient's kept-process calls (detach, attach, processes, signal_process, send_input,
// close_input) against the real agent Server, over connections that come and go as a VM's do.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include "agent/server.h"
#include "vm/agent_client.h"

using namespace kiln;
using namespace kiln::vm;

namespace {

// One agent Server (its process table outlives connections) and the current connection to it.
class ReconnectingAgent {
public:
    ReconnectingAgent() {
        auto server = agent::Server::create(agent::ServerConfig{});
        EXPECT_TRUE(server.ok());
        m_server = std::move(server).value();
        connect();
    }
    ~ReconnectingAgent() { disconnect(); }

    // A new connection, as kilnd makes after a restart or a restore: reset first, then init.
    void connect() {
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        m_agent_fd.reset(fds[1]);
        m_thread = std::thread([this] { m_server->run(m_agent_fd.get()); });
        client = AgentClient::adopt(UniqueFd(fds[0]));
        proto::InitRequest init;
        init.hostname = "unit";
        init.entropy_hex = std::string(128, 'a');
        EXPECT_TRUE(client->init(init).ok());
    }
    // The connection ends under a call still running on another thread: the agent's end is shut
    // down, so both ends see EOF and the client's pending calls fail with vm_gone. The client is
    // destroyed only by disconnect(), once no call uses it.
    void drop_connection() {
        ::shutdown(m_agent_fd.get(), SHUT_RDWR);
        if (m_thread.joinable()) m_thread.join();
    }
    void disconnect() {
        client.reset();  // closes the host end: the server sees EOF
        if (m_thread.joinable()) m_thread.join();
        m_agent_fd.reset();
    }

    std::unique_ptr<AgentClient> client;

private:
    std::unique_ptr<agent::Server> m_server;
    UniqueFd m_agent_fd;
    std::thread m_thread;
};

struct Started {
    std::promise<std::pair<uint32_t, int>> promise;
    std::future<std::pair<uint32_t, int>> future = promise.get_future();
};

proto::ExecRequest kept(std::vector<std::string> argv, bool stdin = false) {
    proto::ExecRequest request;
    request.argv = std::move(argv);
    request.keep = true;
    request.stdin = stdin;
    request.tag = "t";
    return request;
}

}  // namespace

TEST(AgentClientProcesses, DetachListFeedAttachAndEnd) {
    ReconnectingAgent agent;
    Started started;
    ExecIo io;
    io.on_started = [&](uint32_t stream, int pid) { started.promise.set_value({stream, pid}); };
    auto exec = std::async(std::launch::async, [&] { return agent.client->exec(kept({"cat"}, true), io); });
    auto [stream, pid] = started.future.get();
    ASSERT_TRUE(agent.client->detach(stream).ok());
    auto detached = exec.get();
    ASSERT_TRUE(detached.ok()) << detached.error().message;
    EXPECT_TRUE(detached->detached);

    auto list = agent.client->processes();
    ASSERT_TRUE(list.ok()) << list.error().message;
    ASSERT_EQ(list->size(), 1u);
    EXPECT_EQ((*list)[0].pid, pid);
    EXPECT_EQ((*list)[0].tag, "t");
    EXPECT_TRUE((*list)[0].stdin);

    // Two attachers, one detached again before the end.
    std::string out_a, out_b;
    Started attached_b;
    ExecIo io_a, io_b;
    std::promise<void> a_ready;
    io_a.on_started = [&](uint32_t, int) { a_ready.set_value(); };
    io_a.on_stdout = [&](std::string_view d) { out_a.append(d); };
    io_b.on_started = [&](uint32_t s, int p) { attached_b.promise.set_value({s, p}); };
    io_b.on_stdout = [&](std::string_view d) { out_b.append(d); };
    auto a = std::async(std::launch::async, [&] { return agent.client->attach(pid, io_a); });
    auto b = std::async(std::launch::async, [&] { return agent.client->attach(pid, io_b); });
    a_ready.get_future().get();
    auto [b_stream, b_pid] = attached_b.future.get();
    EXPECT_EQ(b_pid, pid);
    // The attach requests are in once the agent has answered a later call on the connection.
    ASSERT_TRUE(agent.client->ping().ok());
    std::string big(300 * 1024, 'x');  // more than one input request carries
    ASSERT_TRUE(agent.client->send_input(pid, big).ok());
    ASSERT_TRUE(agent.client->detach(b_stream).ok());
    auto b_result = b.get();
    ASSERT_TRUE(b_result.ok());
    EXPECT_TRUE(b_result->detached);
    ASSERT_TRUE(agent.client->send_input(pid, "end").ok());
    ASSERT_TRUE(agent.client->close_input(pid).ok());
    auto a_result = a.get();
    ASSERT_TRUE(a_result.ok()) << a_result.error().message;
    EXPECT_EQ(a_result->exit_code, 0);
    EXPECT_FALSE(a_result->detached);
    EXPECT_EQ(out_a, big + "end");

    auto after = agent.client->processes();
    ASSERT_TRUE(after.ok());
    EXPECT_TRUE(after->empty());
    EXPECT_EQ(agent.client->signal_process(pid, SIGTERM).error().code, ErrorCode::NotFound);
}

TEST(AgentClientProcesses, AKeptExecSurvivesTheConnectionDroppingAndIsSignalledFromTheNext) {
    ReconnectingAgent agent;
    Started started;
    ExecIo io;
    io.on_started = [&](uint32_t stream, int pid) { started.promise.set_value({stream, pid}); };
    auto exec = std::async(std::launch::async, [&] { return agent.client->exec(kept({"sleep", "100"}), io); });
    int pid = started.future.get().second;
    agent.drop_connection();
    EXPECT_EQ(exec.get().error().code, ErrorCode::VmGone);
    agent.disconnect();

    agent.connect();
    auto list = agent.client->processes();
    ASSERT_TRUE(list.ok());
    ASSERT_EQ(list->size(), 1u);
    EXPECT_EQ((*list)[0].pid, pid);
    EXPECT_EQ(agent.client->send_input(pid, "x").error().code, ErrorCode::InvalidArgument);  // no stdin

    std::promise<void> attached;
    ExecIo attach_io;
    attach_io.on_started = [&](uint32_t, int) { attached.set_value(); };
    auto follow = std::async(std::launch::async, [&] { return agent.client->attach(pid, attach_io); });
    attached.get_future().get();
    ASSERT_TRUE(agent.client->signal_process(pid, SIGTERM).ok());
    auto result = follow.get();
    ASSERT_TRUE(result.ok()) << result.error().message;
    EXPECT_EQ(result->signal, SIGTERM);
    EXPECT_EQ(agent.client->attach(pid)->signal, SIGTERM);  // kept a while after the end
    EXPECT_EQ(agent.client->attach(999999).error().code, ErrorCode::NotFound);
}

TEST(AgentClientProcesses, DetachingAnExecNotKeptEndsItWithAnError) {
    ReconnectingAgent agent;
    Started started;
    ExecIo io;
    io.on_started = [&](uint32_t stream, int pid) { started.promise.set_value({stream, pid}); };
    proto::ExecRequest request;
    request.argv = {"sleep", "100"};
    auto exec = std::async(std::launch::async, [&] { return agent.client->exec(request, io); });
    ASSERT_TRUE(agent.client->detach(started.future.get().first).ok());
    auto result = exec.get();
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().code, ErrorCode::InvalidArgument);
    auto list = agent.client->processes();
    ASSERT_TRUE(list.ok());
    EXPECT_TRUE(list->empty());
}
