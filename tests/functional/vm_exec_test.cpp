// Functional tests of exec in a real VM: exit codes, signals, streams, stdin, concurrency, timeouts.
#include <atomic>
#include <thread>
#include <vector>

#include "base/file_util.h"
#include "vm_test_env.h"

using namespace kiln;
using kiln::proto::ExecRequest;

KILN_SHARED_VM_SUITE(VmExec);

TEST_F(VmExec, UnameMatchesTheKernelCacheRelease) {
    auto kernel = vm::find_kernel();
    ASSERT_TRUE(kernel.ok());
    ASSERT_FALSE(kernel->release.empty()) << "no release file beside " << kernel->path;
    ExecRequest request;
    request.argv = {"uname", "-r"};
    auto out = agent().exec_collect(request);
    ASSERT_TRUE(out.ok()) << out.error().to_string();
    EXPECT_EQ(out->result.exit_code, 0);
    EXPECT_EQ(out->stdout_data, kernel->release + "\n");
}

TEST_F(VmExec, ExitCodesAndSignals) {
    auto ok = sh("exit 0");
    EXPECT_EQ(ok.result.exit_code, 0);
    EXPECT_EQ(ok.result.signal, 0);
    auto one = sh("exit 1");
    EXPECT_EQ(one.result.exit_code, 1);
    EXPECT_EQ(one.result.shell_status(), 1);
    auto killed = sh("kill -9 $$");
    EXPECT_EQ(killed.result.signal, 9);
    EXPECT_EQ(killed.result.shell_status(), 137);
    EXPECT_FALSE(killed.result.timed_out);
}

TEST_F(VmExec, MissingProgramIs127) {
    ExecRequest request;
    request.argv = {"/no/such/program"};
    auto out = agent().exec_collect(request);
    ASSERT_TRUE(out.ok()) << out.error().to_string();
    EXPECT_EQ(out->result.exit_code, 127);
}

TEST_F(VmExec, StdoutAndStderrAreSeparateStreams) {
    auto out = sh("echo to-out; echo to-err >&2; echo more-out");
    EXPECT_EQ(out.stdout_data, "to-out\nmore-out\n");
    EXPECT_EQ(out.stderr_data, "to-err\n");
}

TEST_F(VmExec, EnvironmentAndWorkingDirectory) {
    ExecRequest request;
    request.argv = {"sh", "-c", "echo \"$KILN_TEST_VAR\"; pwd"};
    request.env = {{"KILN_TEST_VAR", "a value with spaces"}};
    request.cwd = "/tmp";
    auto out = agent().exec_collect(request);
    ASSERT_TRUE(out.ok()) << out.error().to_string();
    EXPECT_EQ(out->stdout_data, "a value with spaces\n/tmp\n");
}

TEST_F(VmExec, CommandsRunUnderTheNormalPolicyWhileTheAgentRunsBatch) {
    // Field 41 of /proc/PID/stat is the policy: 0 SCHED_OTHER, 3 SCHED_BATCH (pid1.h says why).
    auto out = sh("cut -d' ' -f41 /proc/$$/stat; cut -d' ' -f41 /proc/1/stat");
    EXPECT_EQ(out.stdout_data, "0\n3\n");
}

TEST_F(VmExec, StdinIsPipedThrough) {
    std::string input(1024 * 1024 + 7, 'x');
    for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<char>('a' + i % 26);
    ExecRequest wc;
    wc.argv = {"wc", "-c"};
    auto counted = agent().exec_collect(wc, input);
    ASSERT_TRUE(counted.ok()) << counted.error().to_string();
    EXPECT_EQ(std::stoul(counted->stdout_data), input.size());

    ExecRequest cat;
    cat.argv = {"cat"};
    auto echoed = agent().exec_collect(cat, input);
    ASSERT_TRUE(echoed.ok()) << echoed.error().to_string();
    EXPECT_EQ(echoed->stdout_data.size(), input.size());
    EXPECT_TRUE(echoed->stdout_data == input);

    auto empty = agent().exec_collect(wc, std::string());
    ASSERT_TRUE(empty.ok());
    EXPECT_EQ(std::stoul(empty->stdout_data), 0u);
}

namespace {

// VmRSS or VmHWM of the agent (PID 1) in KiB.
uint64_t agent_memory_kib(vm::AgentClient& agent, const char* field) {
    ExecRequest request;
    request.argv = {"grep", field, "/proc/1/status"};
    auto out = agent.exec_collect(request);
    if (!out.ok() || out->result.exit_code != 0) return 0;
    size_t pos = out->stdout_data.find_first_of("0123456789");
    return pos == std::string::npos ? 0 : std::stoull(out->stdout_data.substr(pos));
}

}  // namespace

TEST_F(VmExec, HundredMegabytesOfStdoutStreamWithoutLossAndBoundedAgentMemory) {
    constexpr uint64_t kSize = 100ull * 1024 * 1024;
    std::atomic<bool> done{false};
    std::atomic<uint64_t> max_rss_kib{0};
    std::thread sampler([&] {
        while (!done) {
            uint64_t rss = agent_memory_kib(agent(), "VmRSS");
            if (rss > max_rss_kib) max_rss_kib = rss;
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
    });
    uint64_t received = 0;
    bool all_zero = true;
    vm::ExecIo io;
    io.on_stdout = [&](std::string_view d) {
        received += d.size();
        if (all_zero && d.find_first_not_of('\0') != std::string_view::npos) all_zero = false;
    };
    ExecRequest request;
    request.argv = {"head", "-c", std::to_string(kSize), "/dev/zero"};
    auto start = Clock::now();
    auto result = agent().exec(request, io);
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    done = true;
    sampler.join();
    ASSERT_TRUE(result.ok()) << result.error().to_string();
    EXPECT_EQ(result->exit_code, 0);
    EXPECT_FALSE(result->output_truncated);
    EXPECT_EQ(received, kSize);
    EXPECT_TRUE(all_zero);
    uint64_t hwm = agent_memory_kib(agent(), "VmHWM");
    std::printf("[ info ] 100 MiB of stdout in %.2f s (%.0f MiB/s); agent VmRSS max sampled %lu KiB, VmHWM %lu KiB\n",
                secs, 100 / secs, static_cast<unsigned long>(max_rss_kib.load()), static_cast<unsigned long>(hwm));
    EXPECT_GT(max_rss_kib.load(), 0u);
    EXPECT_LT(max_rss_kib.load(), 32u * 1024);
    EXPECT_LT(hwm, 32u * 1024);
}

TEST_F(VmExec, ThirtyTwoConcurrentExecs) {
    constexpr int kCount = 32;
    std::vector<std::thread> threads;
    std::vector<std::string> outputs(kCount);
    std::vector<std::string> errors(kCount);
    std::vector<int> codes(kCount, -1);
    for (int i = 0; i < kCount; ++i) {
        threads.emplace_back([&, i] {
            ExecRequest request;
            request.argv = {"sh", "-c", "sleep 1; echo out-$0; exit $(($0 % 5))", std::to_string(i)};
            request.timeout_ms = 120000;
            auto out = agent().exec_collect(request);
            if (!out.ok()) {
                errors[i] = out.error().to_string();
                return;
            }
            outputs[i] = out->stdout_data;
            codes[i] = out->result.exit_code;
        });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kCount; ++i) {
        EXPECT_EQ(errors[i], "") << "exec " << i;
        EXPECT_EQ(outputs[i], "out-" + std::to_string(i) + "\n") << "exec " << i;
        EXPECT_EQ(codes[i], i % 5) << "exec " << i;
    }
}

TEST_F(VmExec, TimeoutKillsTheWholeProcessTree) {
    ExecRequest request;
    request.shell = "sleep 300 & sleep 300";
    request.timeout_ms = 1500;
    auto start = Clock::now();
    auto out = agent().exec_collect(request);
    auto elapsed = std::chrono::duration_cast<Millis>(Clock::now() - start).count();
    ASSERT_TRUE(out.ok()) << out.error().to_string();
    EXPECT_TRUE(out->result.timed_out);
    EXPECT_EQ(out->result.signal, 9);
    EXPECT_LT(elapsed, 15000);
    // No sleep survives: neither the shell's child nor the backgrounded one.
    std::string leftovers;
    for (int attempt = 0; attempt < 20; ++attempt) {
        auto ps = sh("ps -o pid,args 2>/dev/null || ps");
        leftovers.clear();
        size_t pos = 0;
        while ((pos = ps.stdout_data.find("sleep 300", pos)) != std::string::npos) {
            leftovers += ps.stdout_data.substr(ps.stdout_data.rfind('\n', pos) + 1, 60) + "\n";
            ++pos;
        }
        if (leftovers.empty()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(leftovers, "");
}

TEST_F(VmExec, SignalReachesARunningCommand) {
    std::atomic<uint32_t> stream{0};
    vm::ExecIo io;
    io.on_started = [&](uint32_t s, int) { stream = s; };
    std::string out;
    io.on_stdout = [&](std::string_view d) {
        out.append(d);
        if (out.find("ready") != std::string::npos && stream) (void)agent().send_signal(stream, 15);
    };
    ExecRequest request;
    request.shell = "echo ready; sleep 300";
    request.timeout_ms = 60000;
    auto result = agent().exec(request, io);
    ASSERT_TRUE(result.ok()) << result.error().to_string();
    EXPECT_EQ(result->signal, 15);
    EXPECT_FALSE(result->timed_out);
}
