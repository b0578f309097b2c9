// Reconcile at start, against a real store and real processes posing as QEMU: live records are
// marked lost, only processes whose command line names our run dirs are killed, orphans removed;
// paused sandboxes stay paused (docs/pause.md).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "base/file_util.h"
#include "daemon/sandboxes/reconcile.h"
#include "daemon/store/db_store.h"
#include "daemon_test_dir.h"

using namespace kiln;
using namespace kiln::daemon;

namespace {

// A child whose argv[0] is `name` and whose last argument is `arg` (a shell loop, so it lives).
pid_t spawn_named(const std::string& name, const std::string& arg) {
    pid_t pid = ::fork();
    if (pid == 0) {
        ::execl("/bin/sh", name.c_str(), "-c", "while :; do sleep 1; done", arg.c_str(), (char*)nullptr);
        ::_exit(127);
    }
    // Wait until exec has replaced the command line.
    for (int i = 0; i < 200 && read_cmdline(pid).find(arg) == std::string::npos; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return pid;
}

// True if the child ended (reaped here); false if it still runs after `ms`.
bool ended(pid_t pid, int ms = 2000) {
    for (int i = 0; i < ms / 10; ++i) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

SandboxRecord record(const std::string& id, int64_t owner, SandboxState state, pid_t pid, const std::string& run_dir) {
    SandboxRecord r;
    r.info = SandboxInfo::from_row(state);
    r.info.id = id;
    r.info.owner_token_id = owner;
    r.info.template_id = "tiny";
    r.info.qemu_pid = pid;
    r.run_dir = run_dir;
    return r;
}

}  // namespace

TEST(DaemonReconcile, KillsOnlyOurQemusAndRemovesOrphans) {
    test::TempDir dir;
    std::string data = dir.path();
    for (const char* sub : {"/vms/aaa", "/vms/bbb", "/vms/orphan", "/snapshots/snap-00000000000a",
                            "/snapshots/snap-00000000000b", "/snapshots/snap-00000000000c.partial", "/templates/tiny-k.partial",
                            "/templates/tiny-k2"})
        ASSERT_TRUE(make_dirs(data + sub).ok());
    auto store = DbStore::open(data + "/kilnd.db");
    ASSERT_TRUE(store.ok());
    int64_t t = *(*store)->insert_token("a", std::string(64, 'a'), 0);

    // A: running, its "QEMU" names its run dir: killed. B: running, but the recorded pid is some
    // other process (pid reuse): never killed on its pid alone. C: creating, no pid yet, with an
    // orphan QEMU in vms/: killed by the scan. D: a finished record: untouched.
    pid_t qemu_a = spawn_named("qemu-system-x86_64", "path=" + data + "/vms/aaa/qmp.sock");
    pid_t stranger = spawn_named("innocent", "/elsewhere");
    pid_t orphan = spawn_named("qemu-system-x86_64", "path=" + data + "/vms/orphan/qmp.sock");
    pid_t other_qemu = spawn_named("qemu-system-x86_64", "path=/some/other/kiln/vms/x/qmp.sock");
    ASSERT_TRUE((*store)->insert_sandbox(record("sb-00000000000a", t, SandboxState::Running, qemu_a, data + "/vms/aaa")).ok());
    ASSERT_TRUE((*store)->insert_sandbox(record("sb-00000000000b", t, SandboxState::Running, stranger, data + "/vms/bbb")).ok());
    ASSERT_TRUE((*store)->insert_sandbox(record("sb-00000000000c", t, SandboxState::Creating, 0, "")).ok());
    ASSERT_TRUE((*store)->insert_sandbox(record("sb-00000000000d", t, SandboxState::Deleted, 0, "")).ok());
    ASSERT_TRUE((*store)->insert_sandbox(record("sb-00000000000e", t, SandboxState::Deleting, 0, "")).ok());
    SnapshotRecord snap;
    snap.info.id = "snap-00000000000a";
    snap.info.owner_token_id = t;
    snap.dir = data + "/snapshots/snap-00000000000a";
    ASSERT_TRUE((*store)->insert_snapshot(snap).ok());

    auto report = reconcile(**store, data, "");
    ASSERT_TRUE(report.ok()) << report.error().to_string();
    EXPECT_EQ(report->marked_lost, 3);
    EXPECT_EQ(report->marked_deleted, 1);
    EXPECT_EQ(report->qemu_killed, 1);
    EXPECT_EQ(report->orphan_qemu_killed, 1);
    EXPECT_EQ(report->run_dirs_removed, 3);
    EXPECT_EQ(report->partial_dirs_removed, 2);
    EXPECT_EQ(report->snapshot_dirs_removed, 1);

    EXPECT_TRUE(ended(qemu_a));
    EXPECT_TRUE(ended(orphan));
    EXPECT_FALSE(ended(stranger, 300)) << "a pid whose command line does not name the run dir is not ours";
    EXPECT_FALSE(ended(other_qemu, 300)) << "another data dir's QEMU is not ours";
    ::kill(stranger, SIGKILL);
    ::kill(other_qemu, SIGKILL);
    ended(stranger);
    ended(other_qemu);

    for (const char* id : {"sb-00000000000a", "sb-00000000000b", "sb-00000000000c"}) {
        auto r = (*store)->get_sandbox(id);
        ASSERT_TRUE(r.ok() && r->has_value());
        EXPECT_EQ((*r)->info.state(), SandboxState::Lost) << id;
        EXPECT_FALSE((*r)->info.error.empty());
        EXPECT_GT((*r)->info.ended_at_ms, 0);
    }
    EXPECT_EQ((*(*store)->get_sandbox("sb-00000000000d"))->info.state(), SandboxState::Deleted);
    EXPECT_EQ((*(*store)->get_sandbox("sb-00000000000e"))->info.state(), SandboxState::Deleted);
    EXPECT_FALSE(path_exists(data + "/vms/aaa"));
    EXPECT_FALSE(path_exists(data + "/vms/orphan"));
    EXPECT_TRUE(path_exists(data + "/snapshots/snap-00000000000a"));
    EXPECT_FALSE(path_exists(data + "/snapshots/snap-00000000000b"));
    EXPECT_FALSE(path_exists(data + "/snapshots/snap-00000000000c.partial"));
    EXPECT_FALSE(path_exists(data + "/templates/tiny-k.partial"));
    EXPECT_TRUE(path_exists(data + "/templates/tiny-k2"));

    // A second run finds nothing to do.
    auto again = reconcile(**store, data, "");
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->marked_lost + again->qemu_killed + again->orphan_qemu_killed + again->run_dirs_removed, 0);
}

TEST(DaemonReconcile, PausedSandboxesStayPausedWithTheirSnapshots) {
    test::TempDir dir;
    std::string data = dir.path();
    // P: paused with its snapshot: untouched. Q: paused, its snapshot gone: lost. R: resuming
    // when kilnd stopped, its snapshot intact: paused again. S: pausing: lost, its half-made
    // snapshot removed. Stray and .partial directories in paused/ are removed.
    for (const char* sub : {"/vms", "/paused/sb-00000000000a", "/paused/sb-00000000000c", "/paused/sb-00000000000d",
                            "/paused/sb-0000000000ff", "/paused/sb-00000000000e.partial"})
        ASSERT_TRUE(make_dirs(data + sub).ok());
    auto store = DbStore::open(data + "/kilnd.db");
    ASSERT_TRUE(store.ok());
    int64_t t = *(*store)->insert_token("a", std::string(64, 'a'), 0);
    ASSERT_TRUE((*store)->insert_sandbox(record("sb-00000000000a", t, SandboxState::Paused, 0, "")).ok());
    ASSERT_TRUE((*store)->insert_sandbox(record("sb-00000000000b", t, SandboxState::Paused, 0, "")).ok());
    ASSERT_TRUE((*store)->insert_sandbox(record("sb-00000000000c", t, SandboxState::Resuming, 0, "")).ok());
    ASSERT_TRUE((*store)->insert_sandbox(record("sb-00000000000d", t, SandboxState::Pausing, 0, "")).ok());

    auto report = reconcile(**store, data, "");
    ASSERT_TRUE(report.ok()) << report.error().to_string();
    EXPECT_EQ(report->kept_paused, 1);
    EXPECT_EQ(report->marked_lost, 2);
    auto state = [&](const char* id) { return (*(*store)->get_sandbox(id))->info.state(); };
    EXPECT_EQ(state("sb-00000000000a"), SandboxState::Paused);
    EXPECT_EQ(state("sb-00000000000b"), SandboxState::Lost);
    EXPECT_NE((*(*store)->get_sandbox("sb-00000000000b"))->info.error.find("snapshot"), std::string::npos);
    EXPECT_EQ(state("sb-00000000000c"), SandboxState::Paused);
    EXPECT_EQ(state("sb-00000000000d"), SandboxState::Lost);
    EXPECT_TRUE(path_exists(data + "/paused/sb-00000000000a"));
    EXPECT_TRUE(path_exists(data + "/paused/sb-00000000000c"));
    EXPECT_FALSE(path_exists(data + "/paused/sb-00000000000d"));
    EXPECT_FALSE(path_exists(data + "/paused/sb-0000000000ff"));
    EXPECT_FALSE(path_exists(data + "/paused/sb-00000000000e.partial"));

    auto again = reconcile(**store, data, "");
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->marked_lost + again->kept_paused + again->snapshot_dirs_removed, 0);
    EXPECT_EQ(state("sb-00000000000a"), SandboxState::Paused);
}
