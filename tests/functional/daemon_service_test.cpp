// LocalSandboxService with real VMs, a real store and the real tiny template: lifecycle, limits,
// TTL from the host against a stopped guest, delete during an exec, fork, and no leaks over cycles.
#include <gtest/gtest.h>
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <thread>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/json_log.h"
#include "daemon/data_dir.h"
#include "daemon/sandboxes/local_sandbox_service.h"
#include "daemon/sandboxes/reconcile.h"
#include "daemon/store/db_store.h"
#include "daemon/templates/template_baker.h"
#include "vm/snapshot.h"
#include "vm/spare_pool.h"
#include "vm_test_env.h"

using namespace kiln;
using namespace kiln::daemon;

namespace {

int count_entries(const std::string& dir) {
    int n = 0;
    std::error_code ec;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir, ec)) ++n;
    return n;
}

bool process_alive(pid_t pid) {
    if (pid <= 0) return false;
    auto stat = read_file("/proc/" + std::to_string(pid) + "/stat", 4096);
    if (!stat.ok()) return false;
    auto close = stat->rfind(')');
    return close != std::string::npos && stat->size() > close + 2 && (*stat)[close + 2] != 'Z';
}

// One data dir, store and baker for the suite (the bake costs a boot); a service per test.
class DaemonService : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (test::vm_unavailable_reason()) return;
        log::set_level(log::Level::Warn);
        const char* old = std::getenv("KILN_DATA_DIR");
        s_old_data_dir = old ? old : "";
        char tmpl[] = "/tmp/kilnd-svc-XXXXXX";
        s_dir = ::mkdtemp(tmpl);
        s_data = prepare_data_dir(s_dir).value();  // sets KILN_DATA_DIR for the VM layer
        s_store = DbStore::open(s_data + "/kilnd.db").value().release();
        s_spares = new vm::SparePool;
        s_baker = new TemplateBaker(s_data + "/templates", vm::AccelMode::Auto, s_spares);
    }
    static void TearDownTestSuite() {
        delete s_baker;
        delete s_spares;  // kills the spares' QEMUs
        if (s_store) s_store->close();
        delete s_store;
        if (!s_dir.empty()) (void)remove_tree(s_dir);
        if (s_old_data_dir.empty()) ::unsetenv("KILN_DATA_DIR");
        else ::setenv("KILN_DATA_DIR", s_old_data_dir.c_str(), 1);
    }
    void SetUp() override {
        KILN_REQUIRE_VM();
        m_alice = Caller{*s_store->insert_token("alice-" + std::to_string(++s_tokens), std::string(60, 'a') + std::to_string(1000 + s_tokens), 0), "alice"};
        m_bob = Caller{*s_store->insert_token("bob-" + std::to_string(s_tokens), std::string(60, 'b') + std::to_string(1000 + s_tokens), 0), "bob"};
    }
    void make_service(int64_t max_sandboxes = 8, int64_t max_memory_mib = 4096, TtlClock clock = {}) {
        ServiceConfig c;
        c.clock = std::move(clock);
        c.data_dir = s_data;
        c.max_sandboxes = max_sandboxes;
        c.max_memory_mib = max_memory_mib;
        c.max_ttl_seconds = 3600;
        c.default_ttl_seconds = 600;
        c.spares = std::getenv("KILN_TEST_NO_SPARE") ? nullptr : s_spares;  // set it to measure restores without spares
        m_service = std::make_unique<LocalSandboxService>(c, *s_store, *s_baker);
    }
    std::string sh(const std::string& id, const std::string& cmd) {
        auto lease = m_service->lease(m_alice, id);
        EXPECT_TRUE(lease.ok()) << lease.error().to_string();
        if (!lease.ok()) return "";
        proto::ExecRequest req;
        req.shell = cmd;
        auto out = (*lease)->agent().exec_collect(req);
        EXPECT_TRUE(out.ok()) << out.error().to_string();
        return out.ok() ? out->stdout_data : "";
    }
    SandboxState state_of(const std::string& id) { return m_service->get(m_alice, id).value().state(); }
    // The sandbox's run dir as recorded (spare QEMUs have run dirs of their own, so counting
    // $DATA/vms says little).
    std::string run_dir_of(const std::string& id) { return s_store->get_sandbox(id).value()->run_dir; }

    static inline std::string s_dir, s_data, s_old_data_dir;
    static inline DbStore* s_store = nullptr;
    static inline vm::SparePool* s_spares = nullptr;
    static inline TemplateBaker* s_baker = nullptr;
    static inline int s_tokens = 0;
    Caller m_alice, m_bob;
    std::unique_ptr<LocalSandboxService> m_service;
};

TEST_F(DaemonService, LifecycleAndErrors) {
    make_service(/*max_sandboxes=*/2);
    CreateRequest req;
    req.metadata = {{"repo", "kiln"}};
    req.env = {{"GREETING", "hello"}};
    auto sb = m_service->create(m_alice, req);
    ASSERT_TRUE(sb.ok()) << sb.error().to_string();
    EXPECT_EQ(sb->state(), SandboxState::Running);
    EXPECT_EQ(sb->template_id, "tiny");
    EXPECT_GT(sb->qemu_pid, 0);
    EXPECT_NEAR(double(sb->expires_at_ms - sb->created_at_ms), 600000.0, 1.0);
    EXPECT_EQ(sh(sb->id, "echo hi"), "hi\n");
    EXPECT_EQ(sh(sb->id, "hostname"), sb->id + "\n");
    auto lease = m_service->lease(m_alice, sb->id);
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ((*lease)->info().env.at("GREETING"), "hello");
    lease->reset();

    // Filters and ownership.
    ListFilter f;
    f.metadata = {{"repo", "kiln"}};
    EXPECT_EQ(m_service->list(m_alice, f)->size(), 1u);
    f.metadata = {{"repo", "other"}};
    EXPECT_EQ(m_service->list(m_alice, f)->size(), 0u);
    EXPECT_EQ(m_service->list(m_bob, ListFilter{})->size(), 0u);
    EXPECT_EQ(m_service->get(m_bob, sb->id).error().code, ErrorCode::NotFound);
    EXPECT_EQ(m_service->lease(m_bob, sb->id).error().code, ErrorCode::NotFound);
    EXPECT_EQ(m_service->remove(m_bob, sb->id).error().code, ErrorCode::NotFound);
    EXPECT_EQ(m_service->get(m_alice, "sb-../../etc").error().code, ErrorCode::NotFound);

    // Validation.
    CreateRequest bad;
    bad.template_id = "nope";
    EXPECT_EQ(m_service->create(m_alice, bad).error().code, ErrorCode::TemplateNotFound);
    bad = CreateRequest{};
    bad.ttl_seconds = 0;
    EXPECT_EQ(m_service->create(m_alice, bad).error().code, ErrorCode::InvalidArgument);
    bad.ttl_seconds = 3601;
    EXPECT_EQ(m_service->create(m_alice, bad).error().code, ErrorCode::InvalidArgument);
    bad = CreateRequest{};
    bad.vcpus = 2;
    EXPECT_EQ(m_service->create(m_alice, bad).error().code, ErrorCode::InvalidArgument);
    bad = CreateRequest{};
    bad.metadata = {{"bad key!", "x"}};
    EXPECT_EQ(m_service->create(m_alice, bad).error().code, ErrorCode::InvalidArgument);
    EXPECT_EQ(m_service->set_ttl(m_alice, sb->id, 0).error().code, ErrorCode::InvalidArgument);

    // TTL changes.
    auto extended = m_service->set_ttl(m_alice, sb->id, 1200);
    ASSERT_TRUE(extended.ok());
    EXPECT_GT(extended->expires_at_ms, sb->expires_at_ms);

    // Limits: two live sandboxes at most.
    auto second = m_service->create(m_alice, CreateRequest{});
    ASSERT_TRUE(second.ok()) << second.error().to_string();
    auto third = m_service->create(m_bob, CreateRequest{});
    ASSERT_FALSE(third.ok());
    EXPECT_EQ(third.error().code, ErrorCode::QuotaExceeded);

    // Delete: VM, process and run dir gone; the record stays, deleted.
    pid_t pid = sb->qemu_pid;
    std::string run_dir = run_dir_of(sb->id);
    ASSERT_TRUE(path_exists(run_dir));
    ASSERT_TRUE(m_service->remove(m_alice, sb->id).ok());
    EXPECT_FALSE(path_exists(run_dir));
    EXPECT_EQ(state_of(sb->id), SandboxState::Deleted);
    EXPECT_FALSE(process_alive(pid));
    EXPECT_EQ(m_service->lease(m_alice, sb->id).error().code, ErrorCode::SandboxNotRunning);
    EXPECT_EQ(m_service->set_ttl(m_alice, sb->id, 60).error().code, ErrorCode::SandboxNotRunning);
    EXPECT_TRUE(m_service->remove(m_alice, sb->id).ok()) << "deleting a finished sandbox is a no-op";
    ASSERT_TRUE(m_service->remove(m_alice, second->id).ok());
    auto counts = m_service->count_by_state();
    EXPECT_GE(counts["deleted"], 2);
    EXPECT_EQ(counts["running"], 0);

    auto templates = m_service->list_templates(m_alice);
    ASSERT_TRUE(templates.ok());
    ASSERT_GE(templates->size(), 1u);
    EXPECT_EQ((*templates)[0].id, "tiny");
    EXPECT_TRUE((*templates)[0].ready);
}

TEST_F(DaemonService, TtlKillsAStoppedGuestFromTheHost) {
    make_service();
    CreateRequest req;
    req.ttl_seconds = 2;
    auto sb = m_service->create(m_alice, req);
    ASSERT_TRUE(sb.ok()) << sb.error().to_string();
    // The whole VM stops: nothing inside can cooperate with its end.
    ASSERT_EQ(::kill(sb->qemu_pid, SIGSTOP), 0);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (state_of(sb->id) == SandboxState::Running && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto info = m_service->get(m_alice, sb->id).value();
    EXPECT_EQ(info.state(), SandboxState::Expired);
    EXPECT_GE(info.ended_at_ms, info.expires_at_ms);
    EXPECT_LT(info.ended_at_ms - info.expires_at_ms, 3000) << "killed promptly at the TTL";
    EXPECT_FALSE(process_alive(sb->qemu_pid));
}

// The reaper goes by the monotonic clock: the wall clock (the service's, here one the test moves)
// jumping a day ahead expires nothing; jumping a day back keeps nothing past its TTL.
TEST_F(DaemonService, TtlsFollowTheMonotonicClockWhenTheWallClockJumps) {
    auto wall_offset_ms = std::make_shared<std::atomic<int64_t>>(0);
    TtlClock clock;
    clock.wall_ms = [wall_offset_ms] { return now_unix_ms() + wall_offset_ms->load(); };
    make_service(8, 4096, clock);
    constexpr int64_t kDayMs = 86400 * 1000;
    CreateRequest long_lived;
    long_lived.ttl_seconds = 3600;
    auto a = m_service->create(m_alice, long_lived);
    ASSERT_TRUE(a.ok()) << a.error().to_string();
    wall_offset_ms->store(2 * kDayMs);  // NTP steps the clock two days ahead
    m_service->reap_once();
    std::this_thread::sleep_for(std::chrono::milliseconds(600));  // the reaper's own passes too
    EXPECT_EQ(state_of(a->id), SandboxState::Running) << "expired by a wall clock jump";
    EXPECT_EQ(m_service->get(m_alice, a->id)->expires_at_ms, a->expires_at_ms) << "the API's expires_at stays as set";

    CreateRequest short_lived;
    short_lived.ttl_seconds = 2;
    auto b = m_service->create(m_alice, short_lived);
    ASSERT_TRUE(b.ok()) << b.error().to_string();
    EXPECT_GT(b->expires_at_ms, now_unix_ms() + kDayMs) << "expires_at is on the (jumped) wall clock";
    wall_offset_ms->store(-kDayMs);  // and back, three days: expires_at is now three days away
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (state_of(b->id) == SandboxState::Running && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(state_of(b->id), SandboxState::Expired) << "kept past its TTL by a wall clock jump back";
    EXPECT_EQ(state_of(a->id), SandboxState::Running);
    EXPECT_TRUE(m_service->remove(m_alice, a->id).ok());
}

TEST_F(DaemonService, DeleteDuringAnExecKillsTheVmAtOnce) {
    make_service();
    auto sb = m_service->create(m_alice, CreateRequest{});
    ASSERT_TRUE(sb.ok()) << sb.error().to_string();
    auto lease = m_service->lease(m_alice, sb->id);
    ASSERT_TRUE(lease.ok());
    auto exec = std::async(std::launch::async, [l = *lease] {
        proto::ExecRequest req;
        req.shell = "sleep 60";
        return l->agent().exec_collect(req);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(m_service->remove(m_alice, sb->id).ok());
    auto result = exec.get();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().code, ErrorCode::VmGone);
    EXPECT_FALSE(process_alive(sb->qemu_pid));
    std::string run_dir = run_dir_of(sb->id);
    EXPECT_TRUE(path_exists(run_dir)) << "the run dir stays while the lease is held";
    lease->reset();
    EXPECT_FALSE(path_exists(run_dir)) << "and goes with the last lease";
}

TEST_F(DaemonService, ForkMakesAChildSandbox) {
    make_service();
    auto parent = m_service->create(m_alice, CreateRequest{});
    ASSERT_TRUE(parent.ok()) << parent.error().to_string();
    sh(parent->id, "echo from-parent > /root/mark; sync");
    ForkRequest fr;
    fr.metadata = {{"role", "child"}};
    auto child = m_service->fork(m_alice, parent->id, fr);
    ASSERT_TRUE(child.ok()) << child.error().to_string();
    EXPECT_EQ(child->parent_id, parent->id);
    EXPECT_EQ(child->metadata.at("role"), "child");
    EXPECT_EQ(sh(child->id, "cat /root/mark"), "from-parent\n");
    EXPECT_EQ(sh(child->id, "hostname"), child->id + "\n");
    EXPECT_EQ(sh(parent->id, "echo alive"), "alive\n");
    EXPECT_EQ(m_service->fork(m_bob, parent->id, ForkRequest{}).error().code, ErrorCode::NotFound);
    ASSERT_TRUE(m_service->remove(m_alice, child->id).ok());
    ASSERT_TRUE(m_service->remove(m_alice, parent->id).ok());
}

TEST_F(DaemonService, SnapshotOfARestoredSandboxWorksAsATemplate) {
    make_service();
    auto sb = m_service->create(m_alice, CreateRequest{});
    ASSERT_TRUE(sb.ok()) << sb.error().to_string();
    sh(sb->id, "echo snapped > /root/mark; echo in-ram > /tmp/ram");
    auto snap = m_service->snapshot(m_alice, sb->id, "base");
    ASSERT_TRUE(snap.ok()) << snap.error().to_string();
    EXPECT_EQ(snap->name, "base");
    EXPECT_EQ(snap->sandbox_id, sb->id);
    EXPECT_GT(snap->size_bytes, 0u);
    EXPECT_EQ(sh(sb->id, "echo still-running"), "still-running\n") << "the sandbox runs on";
    EXPECT_EQ(m_service->snapshot(m_alice, sb->id, "bad name!").error().code, ErrorCode::InvalidArgument);
    EXPECT_EQ(m_service->snapshot(m_bob, sb->id, "").error().code, ErrorCode::NotFound);

    CreateRequest from;
    from.template_id = snap->id;
    auto clone = m_service->create(m_alice, from);
    ASSERT_TRUE(clone.ok()) << clone.error().to_string();
    EXPECT_EQ(clone->template_id, snap->id);
    EXPECT_EQ(sh(clone->id, "cat /root/mark /tmp/ram"), "snapped\nin-ram\n");
    EXPECT_EQ(m_service->create(m_bob, from).error().code, ErrorCode::TemplateNotFound) << "another token's snapshot";

    EXPECT_EQ(m_service->list_snapshots(m_alice)->size(), 1u);
    EXPECT_EQ(m_service->list_snapshots(m_bob)->size(), 0u);
    EXPECT_EQ(m_service->get_template(m_alice, snap->id)->kind, "snapshot");
    EXPECT_EQ(m_service->remove_snapshot(m_bob, snap->id).error().code, ErrorCode::NotFound);
    ASSERT_TRUE(m_service->remove_template(m_alice, snap->id).ok());
    EXPECT_EQ(m_service->get_snapshot(m_alice, snap->id).error().code, ErrorCode::NotFound);
    EXPECT_FALSE(path_exists(s_data + "/snapshots/" + snap->id));
    EXPECT_EQ(sh(clone->id, "echo ok"), "ok\n") << "sandboxes restored from a deleted snapshot keep running";
    ASSERT_TRUE(m_service->remove(m_alice, clone->id).ok());
    ASSERT_TRUE(m_service->remove(m_alice, sb->id).ok());
}

TEST_F(DaemonService, CyclesLeakNoProcessFdOrFile) {
    make_service();
    auto fds = [] { return count_entries("/proc/self/fd"); };
    auto qemus = [] { return find_qemu_processes(s_data + "/vms/").size(); };
    // One warm-up cycle: the spare QEMU and lazily opened files settle.
    {
        auto sb = m_service->create(m_alice, CreateRequest{});
        ASSERT_TRUE(sb.ok()) << sb.error().to_string();
        ASSERT_TRUE(m_service->remove(m_alice, sb->id).ok());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    int fds_before = fds();
    size_t qemus_before = qemus();
    int files_before = count_entries(s_data + "/vms");
    auto start = std::chrono::steady_clock::now();
    double create_ms = 0;
    for (int i = 0; i < 10; ++i) {
        auto sb = m_service->create(m_alice, CreateRequest{});
        ASSERT_TRUE(sb.ok()) << sb.error().to_string();
        create_ms += sb->create_ms;
        EXPECT_EQ(sh(sb->id, "echo " + std::to_string(i)), std::to_string(i) + "\n");
        ASSERT_TRUE(m_service->remove(m_alice, sb->id).ok());
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    std::printf("10 create/exec/delete cycles: %lld ms (mean create %.1f ms)\n", static_cast<long long>(ms), create_ms / 10);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the next spare may be starting
    EXPECT_EQ(qemus(), qemus_before);
    EXPECT_EQ(count_entries(s_data + "/vms"), files_before);
    EXPECT_LE(fds(), fds_before + 2);
}

}  // namespace
