// Agent exec tests over a socketpair: argv and shell, exit codes and signals, stdin, env, cwd, timeouts, limits.
#include <signal.h>
#include <sys/stat.h>

#include <fstream>

#include "agent_test_harness.h"

using namespace kiln;
using namespace kiln::agent;
using namespace kiln::agent::testing;

namespace {

proto::ExecResult exec_result(const StreamReply& reply) {
    EXPECT_TRUE(reply.ok()) << reply.body.dump();
    auto result = proto::parse_exec_result(reply.body);
    EXPECT_TRUE(result.ok());
    return result.ok() ? *result : proto::ExecResult{};
}

// A process is gone when it no longer exists or is a zombie waiting for someone else's wait().
bool process_gone(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    if (!stat) return true;
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

bool wait_gone(pid_t pid, int ms = 3000) {
    for (int i = 0; i < ms / 10; ++i) {
        if (process_gone(pid)) return true;
        usleep(10000);
    }
    return false;
}

size_t resident_kib() {
    std::ifstream status("/proc/self/status");
    std::string key;
    size_t value = 0;
    while (status >> key) {
        if (key == "VmRSS:") {
            status >> value;
            return value;
        }
        status.ignore(1 << 20, '\n');
    }
    return 0;
}

}  // namespace

TEST(AgentExec, ArgvExitCodesAndOutput) {
    AgentHarness agent;
    auto reply = agent.call(proto::op::kExec, json{{"argv", {"echo", "hello", "world"}}});
    ASSERT_GE(reply.frames.size(), 2u);
    EXPECT_EQ(reply.frames.front().type, FrameType::Started);
    auto started = json::parse(reply.frames.front().payload);
    EXPECT_GT(started["pid"].get<int>(), 0);
    EXPECT_EQ(reply.out, "hello world\n");
    auto result = exec_result(reply);
    EXPECT_EQ(result.exit_code, 0);
    EXPECT_EQ(result.signal, 0);
    EXPECT_FALSE(result.timed_out);

    EXPECT_EQ(exec_result(agent.call(proto::op::kExec, json{{"argv", {"false"}}})).exit_code, 1);
}

TEST(AgentExec, ShellWithStderrAndExitCode) {
    AgentHarness agent;
    auto reply = agent.call(proto::op::kExec, json{{"shell", "echo out; echo err >&2; exit 3"}});
    EXPECT_EQ(reply.out, "out\n");
    EXPECT_EQ(reply.err, "err\n");
    EXPECT_EQ(exec_result(reply).exit_code, 3);
}

TEST(AgentExec, KilledBySignal) {
    AgentHarness agent;
    auto result = exec_result(agent.call(proto::op::kExec, json{{"shell", "kill -TERM $$"}}));
    EXPECT_EQ(result.signal, SIGTERM);
    EXPECT_EQ(result.shell_status(), 128 + SIGTERM);
}

TEST(AgentExec, MissingProgramExits127WithAMessage) {
    AgentHarness agent;
    auto reply = agent.call(proto::op::kExec, json{{"argv", {"kiln-no-such-program"}}});
    EXPECT_EQ(exec_result(reply).exit_code, 127);
    EXPECT_NE(reply.err.find("kiln-no-such-program"), std::string::npos) << reply.err;
    EXPECT_NE(reply.err.find("No such file"), std::string::npos) << reply.err;
}

TEST(AgentExec, StdinIsPipedAndClosedByEof) {
    AgentHarness agent;
    uint32_t stream = agent.next_stream();
    agent.request(stream, proto::op::kExec, json{{"argv", {"cat"}}, {"stdin", true}});
    std::string big(300 * 1000, 'x');
    for (size_t i = 0; i < big.size(); i += 7) big[i] = static_cast<char>('a' + i % 26);
    agent.send(FrameType::Stdin, stream, "line one\n");
    for (size_t off = 0; off < big.size(); off += 50000) agent.send(FrameType::Stdin, stream, big.substr(off, 50000));
    agent.send(FrameType::Eof, stream);
    auto reply = agent.collect(stream);
    EXPECT_EQ(reply.out, "line one\n" + big);
    EXPECT_EQ(exec_result(reply).exit_code, 0);
}

TEST(AgentExec, WithoutStdinTheChildReadsDevNull) {
    AgentHarness agent;
    auto reply = agent.call(proto::op::kExec, json{{"shell", "cat; echo done"}});
    EXPECT_EQ(reply.out, "done\n");
}

TEST(AgentExec, EnvironmentDefaultsOverridesAndCwd) {
    TempDir dir;
    AgentHarness agent;
    auto reply = agent.call(proto::op::kExec, json{{"shell", "echo $FOO; echo $HOME; echo $TERM; echo $PATH; pwd"},
                                                   {"env", {{"FOO", "bar baz"}, {"HOME", "/home/x"}}},
                                                   {"cwd", dir.path()}});
    EXPECT_EQ(reply.out, "bar baz\n/home/x\ndumb\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" +
                             dir.path() + "\n");
}

TEST(AgentExec, PathFromTheRequestEnvIsSearched) {
    TempDir dir;
    {
        std::ofstream script(dir / "kiln-test-tool");
        script << "echo from-tool \"$@\"\n";  // no #!: run through /bin/sh like execvp does
    }
    chmod((dir / "kiln-test-tool").c_str(), 0755);
    AgentHarness agent;
    auto reply = agent.call(proto::op::kExec,
                            json{{"argv", {"kiln-test-tool", "a"}}, {"env", {{"PATH", "/nonexistent:" + dir.path()}}}});
    EXPECT_EQ(reply.out, "from-tool a\n");
    EXPECT_EQ(exec_result(reply).exit_code, 0);
}

TEST(AgentExec, TimeoutKillsTheWholeTree) {
    AgentHarness agent;
    auto start = std::chrono::steady_clock::now();
    auto reply = agent.call(proto::op::kExec, json{{"shell", "sleep 100 & echo $!; sleep 100"}, {"timeout_ms", 300}});
    auto elapsed = std::chrono::steady_clock::now() - start;
    auto result = exec_result(reply);
    EXPECT_TRUE(result.timed_out);
    EXPECT_EQ(result.signal, SIGKILL);
    EXPECT_LT(elapsed, std::chrono::seconds(5));
    EXPECT_GE(result.duration_ms, 250u);
    pid_t background = std::atoi(reply.out.c_str());
    ASSERT_GT(background, 0) << reply.out;
    EXPECT_TRUE(wait_gone(background)) << "the background sleep survived the timeout";
}

TEST(AgentExec, SignalFrameSignalsTheTree) {
    AgentHarness agent;
    uint32_t stream = agent.next_stream();
    agent.request(stream, proto::op::kExec, json{{"shell", "sleep 100 & echo $!; wait"}});
    std::string out;
    while (out.find('\n') == std::string::npos) {
        auto f = agent.next_frame(stream);
        ASSERT_TRUE(f);
        if (f->type == FrameType::Stdout) out += f->payload;
    }
    agent.send(FrameType::Signal, stream, R"({"signal": 15})");
    auto reply = agent.collect(stream);
    auto result = exec_result(reply);
    EXPECT_EQ(result.signal, SIGTERM);
    EXPECT_TRUE(wait_gone(std::atoi(out.c_str())));
}

TEST(AgentExec, BadSignalFrameEndsTheExec) {
    AgentHarness agent;
    uint32_t stream = agent.next_stream();
    agent.request(stream, proto::op::kExec, json{{"argv", {"sleep", "100"}}});
    auto started = agent.next_frame(stream);
    ASSERT_TRUE(started);
    pid_t pid = json::parse(started->payload)["pid"];
    agent.send(FrameType::Signal, stream, R"({"signal": "TERM"})");
    EXPECT_EQ(agent.collect(stream).error_code(), proto::errc::kInvalidArgument);
    EXPECT_TRUE(wait_gone(pid));
}

TEST(AgentExec, OutputLimitTruncatesButTheProcessRunsToTheEnd) {
    AgentHarness agent;
    auto reply = agent.call(proto::op::kExec, json{{"shell", "head -c 200000 /dev/zero; echo tail >&2; exit 4"},
                                                   {"output_limit", 1000}});
    EXPECT_EQ(reply.out.size() + reply.err.size(), 1000u);
    auto result = exec_result(reply);
    EXPECT_TRUE(result.output_truncated);
    EXPECT_EQ(result.exit_code, 4);
}

TEST(AgentExec, LargeOutputArrivesIntactAndInOrder) {
    AgentHarness agent;
    auto reply = agent.call(proto::op::kExec, json{{"argv", {"seq", "1", "300000"}}});
    std::string expected;
    for (int i = 1; i <= 300000; ++i) expected += std::to_string(i) + "\n";
    EXPECT_EQ(reply.out.size(), expected.size());
    EXPECT_TRUE(reply.out == expected);
    for (const auto& f : reply.frames) EXPECT_LE(f.payload.size(), 64u * 1024);
}

TEST(AgentExec, BackPressureBoundsMemoryWhileTheHostIsNotReading) {
    AgentHarness agent;
    size_t before = resident_kib();
    uint32_t stream = agent.next_stream();
    agent.request(stream, proto::op::kExec, json{{"shell", "head -c 48000000 /dev/zero"}});
    usleep(400 * 1000);  // the child could have written all 48 MB by now; the agent must not have buffered it
    size_t during = resident_kib();
    EXPECT_LT(during, before + 16 * 1024) << "agent buffered " << (during - before) << " KiB";
    auto reply = agent.collect(stream, std::chrono::seconds(30));
    EXPECT_EQ(reply.out.size(), 48000000u);
    EXPECT_EQ(exec_result(reply).exit_code, 0);
}

TEST(AgentExec, ResultDoesNotWaitForBackgroundProcessesHoldingThePipes) {
    AgentHarness agent;
    auto start = std::chrono::steady_clock::now();
    auto reply = agent.call(proto::op::kExec, json{{"shell", "sleep 5 & echo $!; echo bye"}});
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
    EXPECT_EQ(exec_result(reply).exit_code, 0);
    EXPECT_NE(reply.out.find("bye\n"), std::string::npos);
    kill(std::atoi(reply.out.c_str()), SIGKILL);
}

TEST(AgentExec, DisconnectKillsRunningExecs) {
    auto agent = std::make_unique<AgentHarness>();
    uint32_t stream = agent->next_stream();
    agent->request(stream, proto::op::kExec, json{{"argv", {"sleep", "100"}}});
    auto started = agent->next_frame(stream);
    ASSERT_TRUE(started);
    pid_t pid = json::parse(started->payload)["pid"];
    EXPECT_EQ(agent->stop(), RunEnd::Disconnected);
    EXPECT_TRUE(wait_gone(pid));
}

TEST(AgentExec, ManyConcurrentExecs) {
    AgentHarness agent;
    std::vector<uint32_t> streams;
    for (int i = 0; i < 20; ++i) {
        uint32_t s = agent.next_stream();
        agent.request(s, proto::op::kExec, json{{"shell", "echo " + std::to_string(i) + "; exit " + std::to_string(i)}});
        streams.push_back(s);
    }
    for (int i = 0; i < 20; ++i) {
        auto reply = agent.collect(streams[i]);
        EXPECT_EQ(reply.out, std::to_string(i) + "\n");
        EXPECT_EQ(exec_result(reply).exit_code, i);
    }
}
