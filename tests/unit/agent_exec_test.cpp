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
    EXPECT_EQ(agent.collect(stream).error_code(), ErrorCode::InvalidArgument);
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

TEST(AgentExec, ManyConcurrentExecsWithOutputAndStdin) {
    // The vfork-style spawn under load: execs start while others run, write and exit.
    AgentHarness agent;
    constexpr int kExecs = 64;
    std::vector<uint32_t> streams;
    for (int i = 0; i < kExecs; ++i) {
        uint32_t s = agent.next_stream();
        bool with_stdin = i % 2 == 0;
        agent.request(s, proto::op::kExec,
                      json{{"shell", with_stdin ? "cat; echo " + std::to_string(i) : "seq 1 2000 | tail -n 1; exit 3"},
                           {"stdin", with_stdin}});
        if (with_stdin) {
            agent.send(FrameType::Stdin, s, "in-" + std::to_string(i) + "\n");
            agent.send(FrameType::Eof, s);
        }
        streams.push_back(s);
    }
    for (int i = 0; i < kExecs; ++i) {
        auto reply = agent.collect(streams[i], std::chrono::seconds(30));
        if (i % 2 == 0) {
            EXPECT_EQ(reply.out, "in-" + std::to_string(i) + "\n" + std::to_string(i) + "\n");
            EXPECT_EQ(exec_result(reply).exit_code, 0);
        } else {
            EXPECT_EQ(reply.out, "2000\n");
            EXPECT_EQ(exec_result(reply).exit_code, 3);
        }
    }
}

TEST(AgentExec, ChildStartsWithDefaultSignalsAndAnEmptyMask) {
    // PID 1 ignores several signals and the server's thread blocks SIGCHLD and SIGPIPE: none of it
    // may reach the exec.
    struct sigaction ignore {}, previous {};
    ignore.sa_handler = SIG_IGN;
    ASSERT_EQ(sigaction(SIGUSR1, &ignore, &previous), 0);
    {
        AgentHarness agent;  // the server takes the dispositions as they are now
        auto reply = agent.call(proto::op::kExec, json{{"argv", {"grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"}}});
        EXPECT_EQ(reply.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    }
    sigaction(SIGUSR1, &previous, nullptr);
}

TEST(AgentExec, RunsAsTheRequestedUserAndGroupWithNoSupplementaryGroups) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    AgentHarness agent;
    auto reply = agent.call(proto::op::kExec, json{{"shell", "id -u; id -g; id -G"}, {"uid", 65534}, {"gid", 65533}});
    EXPECT_EQ(reply.out, "65534\n65533\n65533\n");
    EXPECT_EQ(exec_result(reply).exit_code, 0);
    // A working directory the user may not enter: the child's message, exit 127.
    TempDir dir;
    chmod(dir.path().c_str(), 0700);
    reply = agent.call(proto::op::kExec, json{{"argv", {"true"}}, {"uid", 65534}, {"gid", 65534}, {"cwd", dir.path()}});
    EXPECT_EQ(exec_result(reply).exit_code, 127);
    EXPECT_NE(reply.err.find("cannot change directory to"), std::string::npos) << reply.err;
}

TEST(AgentExec, PathSearchSkipsMissingAndNotExecutableFilesLikeExecvp) {
    TempDir dir;
    mkdir((dir / "a").c_str(), 0755);
    mkdir((dir / "b").c_str(), 0755);
    {
        std::ofstream not_executable(dir / "a/kiln-tool");
        not_executable << "echo from-a\n";
        std::ofstream script(dir / "b/kiln-tool");
        script << "#!/bin/sh\necho from-b \"$@\"\n";
    }
    chmod((dir / "a/kiln-tool").c_str(), 0644);
    chmod((dir / "b/kiln-tool").c_str(), 0755);
    AgentHarness agent;
    std::string path = "/nonexistent:" + dir.path() + "/missing:" + dir.path() + "/a:" + dir.path() + "/b";
    auto reply = agent.call(proto::op::kExec, json{{"argv", {"kiln-tool", "x"}}, {"env", {{"PATH", path}}}});
    EXPECT_EQ(reply.out, "from-b x\n");
    EXPECT_EQ(exec_result(reply).exit_code, 0);
    // Only a file that may not be run: EACCES, not ENOENT.
    reply = agent.call(proto::op::kExec, json{{"argv", {"kiln-tool"}}, {"env", {{"PATH", "/nonexistent:" + dir.path() + "/a"}}}});
    EXPECT_EQ(exec_result(reply).exit_code, 127);
    EXPECT_NE(reply.err.find("Permission denied"), std::string::npos) << reply.err;
    // An absolute path that does not exist.
    reply = agent.call(proto::op::kExec, json{{"argv", {dir / "nothing-here"}}});
    EXPECT_EQ(exec_result(reply).exit_code, 127);
    EXPECT_NE(reply.err.find("No such file"), std::string::npos) << reply.err;
}

TEST(AgentExec, DisconnectWithOutputStillUnsentLeavesTheProcessAlive) {
    // The server writes to a closed socket (EPIPE) and to a child's closed stdin with SIGPIPE
    // blocked; run() must not leave that SIGPIPE pending when it unblocks it on return.
    for (int round = 0; round < 3; ++round) {
        AgentHarness agent;
        uint32_t stream = agent.next_stream();
        agent.request(stream, proto::op::kExec, json{{"shell", "head -c 20000000 /dev/zero"}});
        auto first = agent.next_frame(stream);
        ASSERT_TRUE(first);
        uint32_t closed_stdin = agent.next_stream();
        agent.request(closed_stdin, proto::op::kExec, json{{"argv", {"true"}}, {"stdin", true}});
        ASSERT_TRUE(agent.next_frame(closed_stdin));
        usleep(100 * 1000);
        agent.send(FrameType::Stdin, closed_stdin, std::string(1 << 20, 'x'));
        EXPECT_EQ(agent.stop(), RunEnd::Disconnected);
    }
    SUCCEED() << "still here";
}

TEST(AgentExec, FreezeDoesTheFirstExecsSetupAheadAndCallsBeforeFreezeEachTime) {
    // A snapshot is taken frozen: what the first exec would do runs at freeze instead, once, so
    // that every clone starts with it done; before_freeze runs at every freeze.
    int setup_calls = 0, freeze_calls = 0;
    ServerConfig config;
    config.before_first_exec = [&setup_calls] { ++setup_calls; };
    config.before_freeze = [&freeze_calls] { ++freeze_calls; };
    AgentHarness agent(true, config);
    EXPECT_TRUE(agent.call(proto::op::kFreeze).ok());
    EXPECT_EQ(setup_calls, 1);
    EXPECT_EQ(freeze_calls, 1);
    EXPECT_TRUE(agent.call(proto::op::kInit, json{{"hostname", "test"}, {"entropy_hex", std::string(128, 'a')}}).ok());
    EXPECT_TRUE(agent.call(proto::op::kExec, json{{"argv", {"true"}}}).ok());
    EXPECT_TRUE(agent.call(proto::op::kFreeze).ok());
    agent.stop();
    EXPECT_EQ(setup_calls, 1);
    EXPECT_EQ(freeze_calls, 2);
}

TEST(AgentExec, BeforeFirstExecRunsOnceBeforeTheFirstChild) {
    // PID 1 finishes its setup on a thread; the first exec waits for it through this hook.
    TempDir dir;
    int calls = 0;
    ServerConfig config;
    config.before_first_exec = [&calls, &dir] {
        ++calls;
        std::ofstream(dir / "setup-done") << "yes\n";
    };
    AgentHarness agent(true, config);
    EXPECT_TRUE(agent.call(proto::op::kPing).ok());
    EXPECT_EQ(calls, 0) << "only execs wait for the setup";
    auto reply = agent.call(proto::op::kExec, json{{"argv", {"cat", dir / "setup-done"}}});
    EXPECT_EQ(reply.out, "yes\n");
    EXPECT_TRUE(agent.call(proto::op::kExec, json{{"argv", {"true"}}}).ok());
    agent.stop();
    EXPECT_EQ(calls, 1);
}
