// What placement and snapshot copy read from the shared store, on both engines: the registry's
// hosts as placement's loads (host_loads), the hosts that baked a template (hosts_that_ran) and a
// snapshot's holders (add_snapshot_host).
#include <gtest/gtest.h>

#include "daemon/fleet/host_registry.h"
#include "daemon/fleet/placement.h"
#include "daemon/store/db_store.h"
#include "kilnd/kilnd_db.h"
#include "pg_test_server.h"

using namespace kiln;
using namespace kiln::daemon;

namespace {

HostRegistryConfig config_of(const std::string& name, int64_t max_sandboxes) {
    HostRegistryConfig c;
    c.self = HostSpec{name, "http://127.0.0.1:1/" + name, max_sandboxes, 4, 4096, "tcg", "test", "/data/" + name};
    c.timeout = Millis(300);
    return c;
}

SandboxRecord sandbox(const std::string& id, const std::string& host, const std::string& template_id, SandboxState state,
                      int64_t owner) {
    SandboxRecord r;
    r.info = SandboxInfo::from_row(state);
    r.info.id = id;
    r.info.host = host;
    r.info.owner_token_id = owner;
    r.info.template_id = template_id;
    r.info.memory_mib = 300;
    return r;
}

}  // namespace

class FleetPlacementInput : public test::EngineTest {};

TEST_P(FleetPlacementInput, LoadsComeFromTheRegistryAndBakesFromTheSandboxesRun) {
    const std::string path = store_spec();
    auto db_a = open_kilnd_db(path);
    auto db_b = open_kilnd_db(path);
    ASSERT_TRUE(db_a.ok() && db_b.ok());
    DbStore store(*db_a);
    const int64_t owner = *store.insert_token("t", std::string(64, 'a'), 0);
    HostRegistry a(*db_a, config_of("host-a", 2));
    HostRegistry b(*db_b, config_of("host-b", 8));
    ASSERT_TRUE(a.register_self().ok());
    ASSERT_TRUE(b.register_self().ok());
    ASSERT_TRUE(store.insert_sandbox(sandbox("sb-00000000000a", "host-a", "tiny", SandboxState::Running, owner)).ok());
    ASSERT_TRUE(store.insert_sandbox(sandbox("sb-00000000000b", "host-a", "tiny", SandboxState::Deleted, owner)).ok());
    ASSERT_TRUE(store.insert_sandbox(sandbox("sb-00000000000c", "host-b", "small", SandboxState::Creating, owner)).ok());
    ASSERT_TRUE(store.insert_sandbox(sandbox("sb-00000000000d", "host-b", "small", SandboxState::Running, owner)).ok());
    ASSERT_TRUE(a.set_draining("host-b", true).ok());

    auto hosts = a.hosts();
    ASSERT_TRUE(hosts.ok());
    auto loads = fleet::host_loads(*hosts, {"host-b"});
    ASSERT_EQ(loads.size(), 2u);
    EXPECT_EQ(loads[0].name, "host-a");
    EXPECT_TRUE(loads[0].alive);
    EXPECT_FALSE(loads[0].draining);
    EXPECT_EQ(loads[0].live_sandboxes, 1);  // the deleted one does not count
    EXPECT_EQ(loads[0].used_memory_mib, 300);
    EXPECT_EQ(loads[0].max_sandboxes, 2);
    EXPECT_FALSE(loads[0].holds_source);
    EXPECT_TRUE(loads[1].alive);  // a draining host is alive: it still runs its sandboxes
    EXPECT_TRUE(loads[1].draining);
    EXPECT_EQ(loads[1].live_sandboxes, 2);
    EXPECT_TRUE(loads[1].holds_source);
    // host-b is draining, so the create goes to host-a although host-b holds the source.
    auto chosen = fleet::choose_host(loads, {});
    ASSERT_TRUE(chosen.ok());
    EXPECT_EQ(*chosen, "host-a");

    // A host that stops is dead at once: not alive for placement.
    b.stop();
    loads = fleet::host_loads(*a.hosts(), {});
    EXPECT_FALSE(loads[1].alive);

    auto ran = a.hosts_that_ran("small");
    ASSERT_TRUE(ran.ok());
    EXPECT_EQ(*ran, std::vector<std::string>{"host-b"});
    EXPECT_TRUE(a.hosts_that_ran("nothing")->empty());
}

TEST_P(FleetPlacementInput, ASnapshotListsEveryHostHoldingIt) {
    auto db = open_kilnd_db(store_spec());
    ASSERT_TRUE(db.ok()) << db.error().to_string();
    DbStore store(*db);
    auto token = store.insert_token("t", std::string(64, 'b'), 1);
    ASSERT_TRUE(token.ok());
    SnapshotRecord snap;
    snap.info.id = "snap-0123456789ab";
    snap.info.owner_token_id = *token;
    snap.info.sandbox_id = "sb-0123456789ab";
    snap.info.hosts = {"b"};
    snap.dir = "/data/snapshots/snap-0123456789ab";
    ASSERT_TRUE(store.insert_snapshot(snap).ok());
    ASSERT_TRUE(store.add_snapshot_host(snap.info.id, "a").ok());
    ASSERT_TRUE(store.add_snapshot_host(snap.info.id, "a").ok());  // once only
    EXPECT_EQ(store.add_snapshot_host("snap-000000000000", "a").error().code, ErrorCode::NotFound);
    auto got = store.get_snapshot(snap.info.id);
    ASSERT_TRUE(got.ok() && *got);
    EXPECT_EQ((*got)->info.hosts, (std::vector<std::string>{"b", "a"}));
}

INSTANTIATE_ENGINE_TESTS(FleetPlacementInput);
