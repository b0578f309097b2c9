// Agent process table over a socketpair: kept execs outlive Detach and reset, attach fans output
// out to several streams, signal and input by pid, exec's "user", and hostile requests.
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "agent_test_harness.h"
#include "base/base64.h"

using namespace kiln;
using namespace kiln::agent;
using namespace kiln::agent::testing;

namespace {

// Sends a kept exec and returns its pid from the Started frame.
int start_kept(AgentHarness& agent, uint32_t stream, json fields) {
    fields["keep"] = true;
    agent.request(stream, proto::op::kExec, std::move(fields));
    auto started = agent.next_frame(stream);
    EXPECT_TRUE(started && started->type == FrameType::Started) << (started ? started->payload : "nothing");
    if (!started || started->type != FrameType::Started) return 0;
    return json::parse(started->payload)["pid"].get<int>();
}

json procs(AgentHarness& agent) {
    auto reply = agent.call(proto::op::kProcs);
    EXPECT_TRUE(reply.ok()) << reply.body.dump();
    return reply.body.value("processes", json::array());
}

bool listed(AgentHarness& agent, int pid) {
    for (const auto& p : procs(agent))
        if (p.value("pid", 0) == pid) return true;
    return false;
}

StreamReply input(AgentHarness& agent, int pid, const std::string& data, bool eof = false) {
    return agent.call(proto::op::kInput, json{{"pid", pid}, {"data", base64_encode(data)}, {"eof", eof}});
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST(AgentProcesses, DetachEndsTheStreamAndTheKeptExecGoesOnToBeListedFedAndAttached) {
    AgentHarness agent;
    uint32_t exec_stream = agent.next_stream();
    int pid = start_kept(agent, exec_stream,
                         json{{"shell", "echo started; read line; echo got $line; exit 7"}, {"stdin", true},
                              {"tag", "my-tag"}, {"env", {{"K", "v"}}}, {"cwd", "/tmp"}});
    ASSERT_GT(pid, 0);
    auto first = agent.next_frame(exec_stream);
    ASSERT_TRUE(first);
    EXPECT_EQ(first->type, FrameType::Stdout);
    EXPECT_EQ(first->payload, "started\n");

    agent.send(FrameType::Detach, exec_stream);
    auto detached = agent.collect(exec_stream);
    ASSERT_TRUE(detached.ok()) << detached.body.dump();
    EXPECT_TRUE(detached.body["detached"].get<bool>());

    auto list = procs(agent);
    ASSERT_EQ(list.size(), 1u);
    auto info = proto::parse_process_info(list[0]);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->pid, pid);
    EXPECT_EQ(info->tag, "my-tag");
    EXPECT_EQ(info->cwd, "/tmp");
    EXPECT_EQ(info->env.at("K"), "v");
    EXPECT_TRUE(info->stdin);
    EXPECT_EQ(info->argv, (std::vector<std::string>{"/bin/sh", "-c", "echo started; read line; echo got $line; exit 7"}));

    uint32_t attach_stream = agent.next_stream();
    agent.request(attach_stream, proto::op::kAttach, json{{"pid", pid}});
    ASSERT_TRUE(input(agent, pid, "hello\n").ok());
    auto attached = agent.collect(attach_stream);
    ASSERT_TRUE(attached.ok()) << attached.body.dump();
    EXPECT_EQ(attached.out, "got hello\n");
    EXPECT_EQ(attached.body["exit_code"], 7);
    EXPECT_FALSE(attached.body["detached"].get<bool>());

    // Gone from the list, but a late attach still gets the Result.
    EXPECT_FALSE(listed(agent, pid));
    auto late = agent.call(proto::op::kAttach, json{{"pid", pid}});
    ASSERT_TRUE(late.ok()) << late.body.dump();
    EXPECT_EQ(late.body["exit_code"], 7);
}

TEST(AgentProcesses, SeveralAttachersEachGetTheOutputAndTheResult) {
    AgentHarness agent;
    uint32_t exec_stream = agent.next_stream();
    int pid = start_kept(agent, exec_stream, json{{"shell", "read x; echo $x; echo $x >&2; exit 3"}, {"stdin", true}});
    ASSERT_GT(pid, 0);
    uint32_t a = agent.next_stream(), b = agent.next_stream();
    agent.request(a, proto::op::kAttach, json{{"pid", pid}});
    agent.request(b, proto::op::kAttach, json{{"pid", pid}});
    ASSERT_TRUE(agent.call(proto::op::kPing).ok());  // both attaches are in before the input
    // Stdin frames on an attach stream reach the process too.
    agent.send(FrameType::Stdin, b, "fan\n");
    for (uint32_t stream : {exec_stream, a, b}) {
        auto reply = agent.collect(stream);
        ASSERT_TRUE(reply.ok()) << stream << ": " << reply.body.dump();
        EXPECT_EQ(reply.out, "fan\n") << stream;
        EXPECT_EQ(reply.err, "fan\n") << stream;
        EXPECT_EQ(reply.body["exit_code"], 3) << stream;
    }
}

TEST(AgentProcesses, ResetAndAbandonDetachKeptExecsAndKillTheOthers) {
    AgentHarness agent;
    int kept = start_kept(agent, agent.next_stream(), json{{"argv", {"sleep", "100"}}});
    uint32_t plain_stream = agent.next_stream();
    agent.request(plain_stream, proto::op::kExec, json{{"argv", {"sleep", "100"}}});
    auto started = agent.next_frame(plain_stream);
    ASSERT_TRUE(started && started->type == FrameType::Started);
    int plain = json::parse(started->payload)["pid"].get<int>();

    auto reset = agent.call(proto::op::kReset);
    ASSERT_TRUE(reset.ok());
    EXPECT_EQ(reset.body["abandoned"], 2);
    EXPECT_TRUE(wait_gone(plain));
    EXPECT_FALSE(process_gone(kept));
    EXPECT_TRUE(listed(agent, kept));

    // A kept exec's tree is signalled by pid; the Result tells how it ended.
    uint32_t attach_stream = agent.next_stream();
    agent.request(attach_stream, proto::op::kAttach, json{{"pid", kept}});
    ASSERT_TRUE(agent.call(proto::op::kSignal, json{{"pid", kept}, {"signal", SIGTERM}}).ok());
    auto ended = agent.collect(attach_stream);
    ASSERT_TRUE(ended.ok()) << ended.body.dump();
    EXPECT_EQ(ended.body["signal"], SIGTERM);
    EXPECT_FALSE(listed(agent, kept));
}

TEST(AgentProcesses, DetachOfAnExecNotKeptKillsItAndSaysSo) {
    AgentHarness agent;
    uint32_t stream = agent.next_stream();
    agent.request(stream, proto::op::kExec, json{{"argv", {"sleep", "100"}}});
    auto started = agent.next_frame(stream);
    ASSERT_TRUE(started && started->type == FrameType::Started);
    int pid = json::parse(started->payload)["pid"].get<int>();
    agent.send(FrameType::Detach, stream);
    auto reply = agent.collect(stream);
    EXPECT_EQ(reply.error_code(), ErrorCode::InvalidArgument);
    EXPECT_NE(reply.body.value("message", "").find("killed"), std::string::npos);
    EXPECT_TRUE(wait_gone(pid));
    // A Detach for a stream that has ended is dropped; the agent serves on.
    agent.send(FrameType::Detach, stream);
    agent.send(FrameType::Detach, 0);
    EXPECT_TRUE(agent.call(proto::op::kPing).ok());
}

TEST(AgentProcesses, DetachedOutputIsDroppedSoTheProcessNeverBlocks) {
    AgentHarness agent;
    uint32_t stream = agent.next_stream();
    int pid = start_kept(agent, stream, json{{"shell", "head -c 30000000 /dev/zero; exit 4"}});
    ASSERT_GT(pid, 0);
    agent.send(FrameType::Detach, stream);
    // Frames sent before the Detach was read come first; the stream ends with the detach Result.
    auto detached = agent.collect(stream, std::chrono::seconds(30));
    ASSERT_TRUE(detached.ok());
    EXPECT_TRUE(detached.body["detached"].get<bool>());
    // 30 MB nobody reads: it must still run to its end. Gone from the system is not yet ended for
    // the agent, which drains what is left in the pipes first: an attach in between would get that
    // rest (a slow host, ASan). Once the agent no longer lists it, it has ended there too.
    ASSERT_TRUE(wait_gone(pid, 30000));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (listed(agent, pid) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_FALSE(listed(agent, pid));
    auto late = agent.collect([&] {
        uint32_t s = agent.next_stream();
        agent.request(s, proto::op::kAttach, json{{"pid", pid}});
        return s;
    }(), std::chrono::seconds(10));
    ASSERT_TRUE(late.ok()) << late.body.dump();
    EXPECT_EQ(late.body["exit_code"], 4);
    EXPECT_TRUE(late.out.empty());
}

TEST(AgentProcesses, HostileRequestsGetClearErrors) {
    AgentHarness agent;
    EXPECT_EQ(agent.call(proto::op::kAttach, json{{"pid", 999999}}).error_code(), ErrorCode::NotFound);
    EXPECT_EQ(agent.call(proto::op::kSignal, json{{"pid", 999999}, {"signal", 9}}).error_code(), ErrorCode::NotFound);
    EXPECT_EQ(agent.call(proto::op::kAttach, json::object()).error_code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kAttach, json{{"pid", -1}}).error_code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kAttach, json{{"pid", "1"}}).error_code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kSignal, json{{"pid", 1}, {"signal", 0}}).error_code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kSignal, json{{"pid", 1}, {"signal", 65}}).error_code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kInput, json{{"pid", 1}, {"data", "not base64!"}}).error_code(),
              ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kExec, json{{"argv", {"true"}}, {"keep", "yes"}}).error_code(),
              ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kExec, json{{"argv", {"true"}}, {"user", "a:b"}}).error_code(),
              ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kExec, json{{"argv", {"true"}}, {"cwd", ""}}).error_code(),
              ErrorCode::InvalidArgument);  // "" means home only with a user

    // A kept exec without stdin refuses input; signal, input and pids of execs not kept are not found.
    uint32_t stream = agent.next_stream();
    int pid = start_kept(agent, stream, json{{"argv", {"sleep", "100"}}});
    EXPECT_EQ(input(agent, pid, "x").error_code(), ErrorCode::InvalidArgument);
    ASSERT_TRUE(agent.call(proto::op::kSignal, json{{"pid", pid}, {"signal", SIGKILL}}).ok());
    auto ended = agent.collect(stream);
    EXPECT_EQ(ended.body["signal"], SIGKILL);

    AgentHarness fresh(/*init=*/false);
    EXPECT_EQ(fresh.call(proto::op::kProcs).error_code(), ErrorCode::NotReady);
}

TEST(AgentProcesses, TheTableOutlivesTheConnection) {
    auto server = Server::create(ServerConfig{});
    ASSERT_TRUE(server.ok());
    int pid = 0;
    for (int round = 0; round < 2; ++round) {
        int fds[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        std::thread serving([&] { (*server)->run(fds[1]); });
        proto::FrameDecoder decoder;
        auto send = [&](FrameType type, uint32_t stream, const json& body) {
            std::string frame = proto::encode_frame(type, stream, body.dump());
            ASSERT_EQ(write(fds[0], frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
        };
        auto read_until_end = [&](uint32_t stream) {
            Frame last{FrameType::Error, 0, ""};
            std::string out;
            char buf[4096];
            for (;;) {
                while (auto f = decoder.next()) {
                    if (f->stream != stream) continue;
                    if (f->type == FrameType::Stdout) out += f->payload;
                    if (f->type == FrameType::Started) pid = json::parse(f->payload)["pid"].get<int>();
                    if (f->type == FrameType::Result || f->type == FrameType::Error) return std::make_pair(*f, out);
                    if (f->type == FrameType::Started && stream == 3) return std::make_pair(*f, out);
                }
                ssize_t n = read(fds[0], buf, sizeof buf);
                if (n <= 0) return std::make_pair(last, out);
                decoder.feed(buf, static_cast<size_t>(n));
            }
        };
        send(FrameType::Request, 1, proto::make_request(proto::op::kInit, json{{"hostname", "t"}}));
        ASSERT_EQ(read_until_end(1).first.type, FrameType::Result);
        if (round == 0) {
            send(FrameType::Request, 3,
                 proto::make_request(proto::op::kExec, json{{"argv", {"cat"}}, {"keep", true}, {"stdin", true}}));
            ASSERT_EQ(read_until_end(3).first.type, FrameType::Started);
            ASSERT_GT(pid, 0);
        } else {
            send(FrameType::Request, 5, proto::make_request(proto::op::kProcs));
            auto [procs_frame, ignored] = read_until_end(5);
            auto processes = json::parse(procs_frame.payload)["processes"];
            ASSERT_EQ(processes.size(), 1u);
            EXPECT_EQ(processes[0]["pid"], pid);
            send(FrameType::Request, 7, proto::make_request(proto::op::kAttach, json{{"pid", pid}}));
            send(FrameType::Request, 9,
                 proto::make_request(proto::op::kInput, json{{"pid", pid}, {"data", base64_encode("again")}, {"eof", true}}));
            auto [result, out] = read_until_end(7);
            EXPECT_EQ(result.type, FrameType::Result) << result.payload;
            EXPECT_EQ(out, "again");
        }
        close(fds[0]);  // the host goes away; the kept exec must not
        serving.join();
        close(fds[1]);
        if (round == 0) {
            EXPECT_FALSE(process_gone(pid));
        }
    }
}

TEST(AgentProcesses, ExecAsANamedUserTakesItsIdsGroupsEnvironmentAndHome) {
    TempDir dir;
    ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
    const std::string home = dir / "alice";
    ASSERT_EQ(mkdir(home.c_str(), 0755), 0);
    ServerConfig config;
    config.accounts.passwd = dir / "passwd";
    config.accounts.group = dir / "group";
    write_text(config.accounts.passwd, "root:x:0:0:root:/root:/bin/sh\n"
                                       "broken line\n"
                                       "alice:x:1234:2345:Alice:" + home + ":/bin/sh\n"
                                       "ghost:x:1300:1300::/nonexistent:/bin/sh\n");
    write_text(config.accounts.group, "root:x:0:\nalice:x:2345:\nextra:x:3456:bob,alice\nother:x:4567:bob\n");
    AgentHarness agent(true, config);

    auto reply = agent.call(proto::op::kExec,
                            json{{"shell", "id -u; id -g; id -G; pwd; echo $HOME $USER $LOGNAME"}, {"user", "alice"}, {"cwd", ""}});
    ASSERT_TRUE(reply.ok()) << reply.body.dump() << reply.err;
    EXPECT_EQ(reply.out, "1234\n2345\n2345 3456\n" + home + "\n" + home + " alice alice\n");

    // The request's env and cwd win over the user's.
    reply = agent.call(proto::op::kExec, json{{"shell", "pwd; echo $HOME"}, {"user", "alice"}, {"cwd", "/"},
                                              {"env", {{"HOME", "/elsewhere"}}}});
    EXPECT_EQ(reply.out, "/\n/elsewhere\n");
    // root keeps working, and a user without a home starts in /.
    reply = agent.call(proto::op::kExec, json{{"shell", "id -u; id -G; echo $HOME"}, {"user", "root"}});
    EXPECT_EQ(reply.out, "0\n0\n/root\n");
    reply = agent.call(proto::op::kExec, json{{"shell", "id -u; pwd"}, {"user", "ghost"}, {"cwd", ""}});
    EXPECT_EQ(reply.out, "1300\n/\n");

    auto missing = agent.call(proto::op::kExec, json{{"argv", {"true"}}, {"user", "nobody-here"}});
    EXPECT_EQ(missing.error_code(), ErrorCode::NotFound);
    EXPECT_EQ(missing.body.value("message", ""), "no such user 'nobody-here'");

    // procs reports the user of a kept exec.
    uint32_t stream = agent.next_stream();
    int pid = start_kept(agent, stream, json{{"argv", {"sleep", "100"}}, {"user", "alice"}, {"cwd", ""}});
    auto list = procs(agent);
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0]["user"], "alice");
    EXPECT_EQ(list[0]["cwd"], home);
    ASSERT_TRUE(agent.call(proto::op::kSignal, json{{"pid", pid}, {"signal", SIGKILL}}).ok());
    agent.collect(stream);
}
