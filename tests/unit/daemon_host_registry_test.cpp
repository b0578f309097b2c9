// HostRegistry and HostStore against a real store shared by several connections (as several
// kilnd processes share one), on SQLite and on PostgreSQL: registration, drain, the states, the live counts, and the
// sweep of a dead host's sandboxes, which must change each row exactly once however many hosts
// run it at the same moment.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "base/clock.h"
#include "daemon/fleet/host_registry.h"
#include "daemon/sandboxes/reconcile.h"
#include "daemon/store/db_store.h"
#include "daemon_test_dir.h"
#include "pg_test_server.h"
#include "kilnd/kilnd_db.h"
#include "kilnd/metrics.h"

using namespace kiln;
using namespace kiln::daemon;

namespace {

// A short timeout so a host can be made dead by not beating for a moment.
constexpr Millis kTimeout{300};

HostRegistryConfig config_of(const std::string& name) {
    HostRegistryConfig c;
    c.self = HostSpec{name, "http://127.0.0.1:1/" + name, 10, 4, 4096, "tcg", "test", "/data/" + name};
    c.heartbeat = Millis(100);
    c.timeout = kTimeout;
    return c;
}

SandboxRecord sandbox(const std::string& id, const std::string& host, SandboxState state, int64_t owner,
                      uint32_t memory_mib = 256) {
    SandboxRecord r;
    r.info = SandboxInfo::from_row(state);
    r.info.id = id;
    r.info.host = host;
    r.info.owner_token_id = owner;
    r.info.template_id = "tiny";
    r.info.memory_mib = memory_mib;
    return r;
}

// One kilnd's view: its own connection to the shared file.
struct Host {
    std::shared_ptr<Db> db;
    std::unique_ptr<DbStore> store;
    std::unique_ptr<HostRegistry> registry;
};

Host open_host(const std::string& path, const std::string& name, HostRegistryHooks hooks = {}) {
    Host h;
    auto db = open_kilnd_db(path);
    EXPECT_TRUE(db.ok()) << db.error().message;
    h.db = *db;
    h.store = std::make_unique<DbStore>(h.db);
    h.registry = std::make_unique<HostRegistry>(h.db, config_of(name), std::move(hooks));
    EXPECT_TRUE(h.registry->register_self().ok());
    return h;
}

HostStatus find(HostRegistry& r, const std::string& name) {
    auto h = r.host(name);
    EXPECT_TRUE(h.ok()) << name;
    return h.ok() ? *h : HostStatus{};
}

// On both engines: SQLite (one file, several connections) and PostgreSQL (pg_test_server.h).
class HostRegistryTest : public test::EngineTest {
protected:
    void SetUp() override {
        EngineTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        path = store_spec();
        auto db = open_kilnd_db(path);
        ASSERT_TRUE(db.ok());
        DbStore store(*db);
        owner = *store.insert_token("t", std::string(64, 'a'), 0);
    }
    std::string path;
    int64_t owner = 0;
};

}  // namespace

TEST_P(HostRegistryTest, RegistersCountsAndDrains) {
    Host a = open_host(path, "host-a");
    Host b = open_host(path, "host-b");
    ASSERT_TRUE(a.store->insert_sandbox(sandbox("sb-00000000000a", "host-a", SandboxState::Running, owner, 512)).ok());
    ASSERT_TRUE(a.store->insert_sandbox(sandbox("sb-00000000000b", "host-a", SandboxState::Creating, owner, 256)).ok());
    ASSERT_TRUE(a.store->insert_sandbox(sandbox("sb-00000000000c", "host-a", SandboxState::Deleted, owner, 1024)).ok());
    ASSERT_TRUE(a.store->insert_sandbox(sandbox("sb-00000000000e", "host-a", SandboxState::Paused, owner, 2048)).ok());
    ASSERT_TRUE(b.store->insert_sandbox(sandbox("sb-00000000000d", "host-b", SandboxState::Running, owner)).ok());

    auto hosts = a.registry->hosts();
    ASSERT_TRUE(hosts.ok());
    ASSERT_EQ(hosts->size(), 2u);
    EXPECT_EQ((*hosts)[0].record.spec.name, "host-a");  // by name
    EXPECT_EQ((*hosts)[0].state, HostState::Alive);
    EXPECT_EQ((*hosts)[0].record.live_sandboxes, 2);  // the deleted and the paused one are not live
    EXPECT_EQ((*hosts)[0].record.memory_mib_in_use, 768);
    EXPECT_EQ((*hosts)[0].record.spec.advertise_url, "http://127.0.0.1:1/host-a");
    EXPECT_EQ((*hosts)[0].record.spec.max_sandboxes, 10);
    EXPECT_EQ((*hosts)[1].record.live_sandboxes, 1);

    // A drain set through any host is the drained host's, and it learns it on its next beat.
    ASSERT_TRUE(a.registry->set_draining("host-b", true).ok());
    EXPECT_EQ(find(*a.registry, "host-b").state, HostState::Draining);
    EXPECT_FALSE(b.registry->draining());
    b.registry->beat_once();
    EXPECT_TRUE(b.registry->draining());
    EXPECT_EQ(b.registry->check_accepting().error().code, ErrorCode::Unavailable);
    EXPECT_TRUE(a.registry->check_accepting().ok());
    // It survives the host's restart (register_self keeps it) ...
    Host b2 = open_host(path, "host-b");
    EXPECT_TRUE(b2.registry->draining());
    // ... until undrained.
    ASSERT_TRUE(b2.registry->set_draining("host-b", false).ok());
    EXPECT_TRUE(b2.registry->check_accepting().ok());
    EXPECT_EQ(find(*a.registry, "host-b").state, HostState::Alive);
    EXPECT_EQ(a.registry->set_draining("no-such-host", true).error().code, ErrorCode::NotFound);

    // The per-host gauges and fleet totals /metrics shows.
    std::string text = render_host_metrics(*a.registry->hosts(), "host-a");
    EXPECT_NE(text.find("kiln_fleet_hosts{state=\"alive\"} 2"), std::string::npos) << text;
    EXPECT_NE(text.find("kiln_fleet_live_sandboxes 3"), std::string::npos) << text;
    EXPECT_NE(text.find("kiln_host_live_sandboxes{host=\"host-a\"} 2"), std::string::npos) << text;
    EXPECT_NE(text.find("kiln_host_up{host=\"host-a\",state=\"alive\",self=\"true\"} 1"), std::string::npos) << text;
}

TEST_P(HostRegistryTest, DeadHostsSandboxesBecomeLostExactlyOnce) {
    Host a = open_host(path, "host-a");
    Host b = open_host(path, "host-b");
    Host c = open_host(path, "host-c");
    std::vector<std::string> b_live;
    for (int i = 0; i < 20; ++i) {
        char id[32];
        std::snprintf(id, sizeof id, "sb-%012x", 0x100 + i);
        ASSERT_TRUE(b.store->insert_sandbox(sandbox(id, "host-b", i % 2 ? SandboxState::Running : SandboxState::Creating, owner)).ok());
        b_live.push_back(id);
    }
    ASSERT_TRUE(b.store->insert_sandbox(sandbox("sb-0000000000f1", "host-b", SandboxState::Deleting, owner)).ok());
    ASSERT_TRUE(b.store->insert_sandbox(sandbox("sb-0000000000f2", "host-b", SandboxState::Expired, owner)).ok());
    // Paused: no VM to lose, its snapshot on B's disk (resumable once B is back); pausing and
    // resuming hold a VM, lost with the others.
    ASSERT_TRUE(b.store->insert_sandbox(sandbox("sb-0000000000f3", "host-b", SandboxState::Paused, owner)).ok());
    ASSERT_TRUE(b.store->insert_sandbox(sandbox("sb-0000000000f4", "host-b", SandboxState::Pausing, owner)).ok());
    ASSERT_TRUE(b.store->insert_sandbox(sandbox("sb-0000000000f5", "host-b", SandboxState::Resuming, owner)).ok());
    ASSERT_TRUE(a.store->insert_sandbox(sandbox("sb-0000000000a1", "host-a", SandboxState::Running, owner)).ok());

    // B alive: nothing happens to its sandboxes.
    a.registry->beat_once();
    EXPECT_EQ((*a.store->get_sandbox(b_live[1]))->info.state(), SandboxState::Running);

    // B stops beating; A and C keep beating past B's timeout, then both sweep at the same moment.
    auto until = Clock::now() + kTimeout + Millis(200);
    while (Clock::now() < until) {
        a.registry->beat_once();
        c.registry->beat_once();
        std::this_thread::sleep_for(Millis(50));
    }
    EXPECT_EQ(find(*a.registry, "host-b").state, HostState::Dead);
    EXPECT_EQ(find(*a.registry, "host-a").state, HostState::Alive);
    // Both of them ran the sweep above already; run it again from two threads at once and count
    // through the store itself: every one of B's live rows is lost, with the reason, once.
    auto lost = a.store->list_host_sandboxes("host-b");
    ASSERT_TRUE(lost.ok());
    int lost_n = 0;
    for (const auto& r : *lost) {
        if (r.info.id == "sb-0000000000f1") {
            EXPECT_EQ(r.info.state(), SandboxState::Deleted);  // its delete is done: the VM went with the host
        } else if (r.info.id == "sb-0000000000f3") {
            EXPECT_EQ(r.info.state(), SandboxState::Paused);
        } else if (r.info.id == "sb-0000000000f2") {
            EXPECT_EQ(r.info.state(), SandboxState::Expired);  // ended records are left as they were
            EXPECT_EQ(r.info.error, "");
        } else {
            EXPECT_EQ(r.info.state(), SandboxState::Lost) << r.info.id;
            EXPECT_EQ(r.info.error, "host lost");
            EXPECT_GT(r.info.ended_at_ms, 0);
            ++lost_n;
        }
    }
    EXPECT_EQ(lost_n, 22);
    EXPECT_EQ((*a.store->get_sandbox("sb-0000000000a1"))->info.state(), SandboxState::Running);  // A's own
    EXPECT_EQ(find(*a.registry, "host-b").record.live_sandboxes, 0);
}

TEST_P(HostRegistryTest, ConcurrentSweepsChangeEachRowOnce) {
    Host a = open_host(path, "host-a");
    Host c = open_host(path, "host-c");
    {
        Host b = open_host(path, "host-b");
        for (int i = 0; i < 50; ++i) {
            char id[32];
            std::snprintf(id, sizeof id, "sb-%012x", 0x200 + i);
            ASSERT_TRUE(b.store->insert_sandbox(sandbox(id, "host-b", SandboxState::Running, owner)).ok());
        }
    }  // B's registry stops: a graceful stop is dead at once, no timeout to wait for
    EXPECT_EQ(find(*a.registry, "host-b").state, HostState::Dead);
    // The sweep itself, as HostRegistry runs it, from two connections in two threads at once.
    std::atomic<int> total{0};
    auto sweep = [&](Host& h, const std::string& self) {
        HostStore store(h.db);
        auto n = store.end_sandboxes_of_dead_hosts(self, now_unix_ms() - kTimeout.count(), now_unix_ms());
        ASSERT_TRUE(n.ok()) << n.error().message;
        total += static_cast<int>(n->size());
    };
    std::thread t1([&] { sweep(a, "host-a"); });
    std::thread t2([&] { sweep(c, "host-c"); });
    t1.join();
    t2.join();
    EXPECT_EQ(total.load(), 50);
    HostStore store(a.db);
    auto again = store.end_sandboxes_of_dead_hosts("host-a", now_unix_ms() - kTimeout.count(), now_unix_ms());
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(again->empty());
}

TEST_P(HostRegistryTest, AHostJudgedDeadFencesItsOwnVms) {
    std::vector<std::string> fenced;
    HostRegistryHooks hooks;
    hooks.live_ids = [] { return std::vector<std::string>{"sb-0000000000b1", "sb-0000000000b2"}; };
    hooks.fence = [&](const std::vector<std::string>& ids) { fenced = ids; };
    Host a = open_host(path, "host-a");
    Host b = open_host(path, "host-b", hooks);
    ASSERT_TRUE(b.store->insert_sandbox(sandbox("sb-0000000000b1", "host-b", SandboxState::Running, owner)).ok());
    ASSERT_TRUE(b.store->insert_sandbox(sandbox("sb-0000000000b2", "host-b", SandboxState::Running, owner)).ok());
    // B was cut off from the store for longer than the timeout; A recorded its sandboxes lost.
    std::this_thread::sleep_for(kTimeout + Millis(100));
    a.registry->beat_once();
    ASSERT_EQ((*a.store->get_sandbox("sb-0000000000b1"))->info.state(), SandboxState::Lost);
    // B's next beat finds it out and ends those VMs here.
    b.registry->beat_once();
    std::sort(fenced.begin(), fenced.end());
    EXPECT_EQ(fenced, (std::vector<std::string>{"sb-0000000000b1", "sb-0000000000b2"}));
    EXPECT_EQ(find(*a.registry, "host-b").state, HostState::Alive);  // and it is alive again
}

TEST_P(HostRegistryTest, FirstHostClaimsRowsFromBeforeHostsAndReconcilesOnlyItsOwn) {
    {
        auto db = open_kilnd_db(path);
        DbStore store(*db);
        // Rows as migration 11 left them: no host.
        ASSERT_TRUE(store.insert_sandbox(sandbox("sb-000000000001", "", SandboxState::Running, owner)).ok());
        SnapshotRecord snap;
        snap.info.id = "snap-000000000001";
        snap.info.owner_token_id = owner;
        snap.dir = dir() + "/snapshots/snap-000000000001";
        ASSERT_TRUE(store.insert_snapshot(snap).ok());
    }
    Host a = open_host(path, "host-a");
    Host b = open_host(path, "host-b");
    EXPECT_EQ((*a.store->get_sandbox("sb-000000000001"))->info.host, "host-a");
    EXPECT_EQ((*a.store->get_snapshot("snap-000000000001"))->info.hosts, (std::vector<std::string>{"host-a"}));
    ASSERT_TRUE(b.store->insert_sandbox(sandbox("sb-000000000002", "host-b", SandboxState::Running, owner)).ok());

    // B restarts on its own data dir: its reconcile ends its own record, never A's.
    std::string b_data = dir() + "/b";
    auto report = reconcile(*b.store, b_data, "host-b");
    ASSERT_TRUE(report.ok()) << report.error().message;
    EXPECT_EQ(report->marked_lost, 1);
    EXPECT_EQ((*b.store->get_sandbox("sb-000000000002"))->info.state(), SandboxState::Lost);
    EXPECT_EQ((*b.store->get_sandbox("sb-000000000001"))->info.state(), SandboxState::Running);
}

// After a store outage every host's heartbeat is old at once: the first host back must not take
// the others for dead. A host judges others only once its own heartbeats have been landing for a
// whole timeout (here: a host that has just registered).
TEST_P(HostRegistryTest, AHostJudgesOthersOnlyAfterATimeoutInContact) {
    // B's registry outlives the checks: destroying it would record a graceful stop, and B must
    // look like a host cut off, not one that stopped.
    std::unique_ptr<HostRegistry> cut_off;
    {
        Host b = open_host(path, "host-b");
        ASSERT_TRUE(b.store->insert_sandbox(sandbox("sb-0000000000c1", "host-b", SandboxState::Running, owner)).ok());
        // B's last heartbeat is its registration; it never beats again (as if the store went away).
        cut_off = std::move(b.registry);
    }
    std::this_thread::sleep_for(kTimeout + Millis(100));
    Host a = open_host(path, "host-a");  // A (back) sees B's heartbeat old, but has just come in contact
    a.registry->beat_once();
    EXPECT_EQ(find(*a.registry, "host-b").state, HostState::Dead);
    EXPECT_EQ((*a.store->get_sandbox("sb-0000000000c1"))->info.state(), SandboxState::Running)
        << "judged after less than a timeout in contact";
    // B does not come back: after a whole timeout in contact A ends B's sandbox.
    std::this_thread::sleep_for(kTimeout + Millis(50));
    a.registry->beat_once();
    EXPECT_EQ((*a.store->get_sandbox("sb-0000000000c1"))->info.state(), SandboxState::Lost);
}

INSTANTIATE_ENGINE_TESTS(HostRegistryTest);
