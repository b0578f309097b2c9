// Kept processes in a real guest: a process started with keep is detached from its call, listed,
// attached from a new call, fed stdin and signalled by pid, and lives on through what a sandbox's
// processes go through: a freeze and init (snapshot), the host connection dropping, and a
// restore of that snapshot (pause and resume).
#include <gtest/gtest.h>
#include <signal.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/random.h"
#include "vm/guest_artifacts.h"
#include "vm/snapshot.h"
#include "vm_test_env.h"

using namespace kiln;
using namespace kiln::vm;

namespace {

// Each line read is echoed as "<count>:<line>"; "bye" and exit 5 at the end of stdin.
constexpr const char* kEchoScript = "echo ready; i=0; while read l; do i=$((i+1)); echo \"$i:$l\"; done; echo bye; exit 5";

// Output collected from another thread, waited on by content.
class Collected {
public:
    void add(std::string_view data) {
        std::lock_guard lock(m_mutex);
        m_text.append(data);
        m_cv.notify_all();
    }
    bool wait_for(const std::string& needle, Millis timeout = Millis(60000)) {
        std::unique_lock lock(m_mutex);
        return m_cv.wait_for(lock, timeout, [&] { return m_text.find(needle) != std::string::npos; });
    }
    std::string text() {
        std::lock_guard lock(m_mutex);
        return m_text;
    }

private:
    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::string m_text;
};

// An attach call running on its own thread.
class Follower {
public:
    Follower(AgentClient& agent, int pid) {
        std::promise<void> attached;
        auto attached_future = attached.get_future();
        ExecIo io;
        io.on_started = [&attached](uint32_t, int) { attached.set_value(); };
        io.on_stdout = [this](std::string_view d) { out.add(d); };
        io.host_timeout = Millis(300000);  // a failing test ends rather than hangs
        m_result = std::async(std::launch::async, [&agent, pid, io] { return agent.attach(pid, io); });
        attached_future.wait();
    }
    Result<proto::ExecResult> result() { return m_result.get(); }
    Collected out;

private:
    std::future<Result<proto::ExecResult>> m_result;
};

// Starts a kept exec, waits for its first output line, detaches the call and returns the pid.
int start_and_detach(AgentClient& agent, proto::ExecRequest request, const std::string& first_line) {
    request.keep = true;
    Collected out;
    std::promise<std::pair<uint32_t, int>> started;
    auto started_future = started.get_future();
    ExecIo io;
    io.on_started = [&](uint32_t stream, int pid) { started.set_value({stream, pid}); };
    io.on_stdout = [&](std::string_view d) { out.add(d); };
    auto call = std::async(std::launch::async, [&] { return agent.exec(request, io); });
    auto [stream, pid] = started_future.get();
    EXPECT_TRUE(out.wait_for(first_line)) << out.text();
    EXPECT_TRUE(agent.detach(stream).ok());
    auto result = call.get();
    EXPECT_TRUE(result.ok()) << result.error().to_string();
    EXPECT_TRUE(result.ok() && result->detached);
    return pid;
}

std::optional<proto::ProcessInfo> listed(AgentClient& agent, int pid) {
    auto list = agent.processes();
    EXPECT_TRUE(list.ok()) << list.error().to_string();
    if (!list.ok()) return std::nullopt;
    for (auto& p : *list)
        if (p.pid == pid) return p;
    return std::nullopt;
}

// Feeds `line` and waits until `follower` has seen `echo`.
void feed(AgentClient& agent, int pid, Follower& follower, const std::string& line, const std::string& echo) {
    ASSERT_TRUE(agent.send_input(pid, line + "\n").ok());
    EXPECT_TRUE(follower.out.wait_for(echo)) << follower.out.text();
}

proto::ExecRequest echo_request() {
    proto::ExecRequest request;
    request.shell = kEchoScript;
    request.stdin = true;
    request.tag = "echo-tag";
    request.user = "root";
    request.cwd = "";
    return request;
}

class VmProcesses : public ::testing::Test {
protected:
    void SetUp() override { KILN_REQUIRE_VM(); }
};

}  // namespace

TEST_F(VmProcesses, AKeptProcessIsListedAttachedFedSignalledAndOutlivesAFreezeAndTheConnection) {
    auto options = test::test_boot_options();
    options.snapshottable = true;
    auto vm = Vm::boot(options);
    ASSERT_TRUE(vm.ok()) << vm.error().to_string();

    int pid = start_and_detach((*vm)->agent(), echo_request(), "ready");
    auto info = listed((*vm)->agent(), pid);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->tag, "echo-tag");
    EXPECT_EQ(info->user, "root");
    EXPECT_EQ(info->cwd, "/root");  // "" is the user's home
    EXPECT_TRUE(info->stdin);

    {
        Follower first((*vm)->agent(), pid);
        feed((*vm)->agent(), pid, first, "one", "1:one");
        // A second attacher gets the same output.
        Follower second((*vm)->agent(), pid);
        feed((*vm)->agent(), pid, second, "two", "2:two");
        EXPECT_TRUE(first.out.wait_for("2:two"));

        // A snapshot that resumes the VM (freeze, then init): the process and its attachers carry on.
        const std::string snap = vms_dir() + "/../test-snapshots/procs-" + random_hex(6).value();
        (void)make_dirs(vms_dir() + "/../test-snapshots");
        SnapshotRequest request;
        request.dir = snap;
        request.resume = true;
        auto manifest = take_snapshot(**vm, request);
        ASSERT_TRUE(manifest.ok()) << manifest.error().to_string();
        feed((*vm)->agent(), pid, second, "three", "3:three");
        EXPECT_TRUE(first.out.wait_for("3:three"));

        // The host connection drops: both attach calls fail, the process does not.
        (*vm)->agent().fail_all(make_error(ErrorCode::VmGone, "the test dropped the connection"));
        EXPECT_EQ(first.result().error().code, ErrorCode::VmGone);
        EXPECT_EQ(second.result().error().code, ErrorCode::VmGone);

        // A new connection: reset first, as a host does (the guest may not have seen the drop).
        auto agent = AgentClient::connect((*vm)->paths().agent_socket, Millis(10000));
        ASSERT_TRUE(agent.ok()) << agent.error().to_string();
        ASSERT_TRUE((*agent)->send_reset().ok());
        ASSERT_TRUE((*agent)->ping().ok());
        ASSERT_TRUE(listed(**agent, pid));
        Follower third(**agent, pid);
        feed(**agent, pid, third, "four", "4:four");
        ASSERT_TRUE((*agent)->close_input(pid).ok());
        auto result = third.result();
        ASSERT_TRUE(result.ok()) << result.error().to_string();
        EXPECT_EQ(result->exit_code, 5);
        EXPECT_NE(third.out.text().find("bye"), std::string::npos);
        EXPECT_FALSE(listed(**agent, pid));

        // Signals reach a kept process's tree by pid.
        proto::ExecRequest sleeper;
        sleeper.shell = "sleep 1000 & echo started; wait";
        int sleeper_pid = start_and_detach(**agent, sleeper, "started");
        Follower follower(**agent, sleeper_pid);
        ASSERT_TRUE((*agent)->signal_process(sleeper_pid, SIGTERM).ok());
        auto ended = follower.result();
        ASSERT_TRUE(ended.ok()) << ended.error().to_string();
        EXPECT_EQ(ended->signal, SIGTERM);
        auto leftovers = (*agent)->exec_collect([] {
            proto::ExecRequest r;
            r.shell = "ps | grep '[s]leep 1000' || echo none";
            return r;
        }());
        ASSERT_TRUE(leftovers.ok());
        EXPECT_EQ(leftovers->stdout_data, "none\n");

        // The snapshot, restored (what resume does): the process runs on in the clone, where the
        // streams of the two attachers at snapshot time are gone (restore resets the agent).
        RestoreRequest restore;
        restore.snapshot_dir = snap;
        auto clone = restore_snapshot(restore);
        ASSERT_TRUE(clone.ok()) << clone.error().to_string();
        ASSERT_TRUE(listed((*clone)->agent(), pid)) << "the kept process did not survive the restore";
        Follower in_clone((*clone)->agent(), pid);
        feed((*clone)->agent(), pid, in_clone, "resumed", "3:resumed");  // the count as of the snapshot
        auto signalled = (*clone)->agent().signal_process(pid, SIGKILL);
        ASSERT_TRUE(signalled.ok()) << signalled.error().to_string();
        auto killed = in_clone.result();
        ASSERT_TRUE(killed.ok()) << killed.error().to_string();
        EXPECT_EQ(killed->signal, SIGKILL);
        (void)remove_tree(snap);
    }
}

TEST_F(VmProcesses, ExecAsAUserNamedInTheGuest) {
    auto vm = Vm::boot(test::test_boot_options());
    ASSERT_TRUE(vm.ok()) << vm.error().to_string();
    proto::ExecRequest request;
    request.shell = "id -u; id -g; pwd; echo $HOME $USER $LOGNAME";
    request.user = "root";
    request.cwd = "";
    auto out = (*vm)->agent().exec_collect(request);
    ASSERT_TRUE(out.ok()) << out.error().to_string();
    EXPECT_EQ(out->stdout_data, "0\n0\n/root\n/root root root\n") << out->stderr_data;

    request.user = "nobody";
    request.shell = "id -u";
    out = (*vm)->agent().exec_collect(request);
    ASSERT_TRUE(out.ok()) << out.error().to_string();
    EXPECT_EQ(out->stdout_data, "65534\n") << out->stderr_data;

    request.user = "no-such-user";
    auto missing = (*vm)->agent().exec_collect(request);
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
    EXPECT_EQ(missing.error().message, "no such user 'no-such-user'");
}
