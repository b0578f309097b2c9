// DbStore against a real SQLite file and a real PostgreSQL database: schema versions, tokens,
// sandbox and snapshot records.
#include <gtest/gtest.h>

#include "daemon/store/migrations.h"
#include "daemon/store/db_store.h"
#include "daemon_test_dir.h"
#include "pg_test_server.h"

using namespace kiln;
using namespace kiln::daemon;

namespace {

SandboxRecord sample(const std::string& id, int64_t owner, SandboxState state, int64_t created) {
    SandboxRecord r;
    r.info = SandboxInfo::from_row(state);
    r.info.id = id;
    r.info.owner_token_id = owner;
    r.info.template_id = "tiny";
    r.info.created_at_ms = created;
    r.info.expires_at_ms = created + 600000;
    r.info.metadata = {{"repo", "kiln"}, {"pr", "4"}};
    r.info.env = {{"A", "1"}};
    r.info.vcpus = 1;
    r.info.memory_mib = 256;
    r.info.qemu_pid = 1234;
    r.run_dir = "/data/vms/abc";
    return r;
}

class DaemonStore : public test::EngineTest {};

}  // namespace

TEST_P(DaemonStore, CreatesSchemaAndKeepsDataAcrossReopen) {
    std::string path = store_spec();
    int64_t token = 0;
    {
        auto store = DbStore::open(path);
        ASSERT_TRUE(store.ok()) << store.error().to_string();
        auto t = (*store)->insert_token("ci", std::string(64, 'a'), 1000);
        ASSERT_TRUE(t.ok()) << t.error().to_string();
        token = *t;
        ASSERT_TRUE((*store)->insert_sandbox(sample("sb-000000000001", token, SandboxState::Running, 5)).ok());
        (*store)->close();
    }
    auto db = Db::open(path);
    ASSERT_TRUE(db.ok());
    auto version = schema_version(**db);
    ASSERT_TRUE(version.ok());
    EXPECT_EQ(*version, migrations().back().version);
    if (engine() == test::Engine::Sqlite) {
        auto session = (*db)->session();
        auto mode = session.prepare("PRAGMA journal_mode");
        ASSERT_TRUE(mode.ok());
        ASSERT_TRUE(*mode->step());
        EXPECT_EQ(mode->column_text(0), "wal");
    }
    (*db)->close();

    auto store = DbStore::open(path);
    ASSERT_TRUE(store.ok());
    auto got = (*store)->get_sandbox("sb-000000000001");
    ASSERT_TRUE(got.ok() && got->has_value());
    const SandboxRecord& r = **got;
    EXPECT_EQ(r.info.owner_token_id, token);
    EXPECT_EQ(r.info.state(), SandboxState::Running);
    EXPECT_EQ(r.info.metadata.at("repo"), "kiln");
    EXPECT_EQ(r.info.env.at("A"), "1");
    EXPECT_EQ(r.info.qemu_pid, 1234);
    EXPECT_EQ(r.run_dir, "/data/vms/abc");
}

TEST_P(DaemonStore, RefusesADatabaseFromANewerKilnd) {
    std::string path = store_spec();
    {
        auto db = Db::open(path);
        ASSERT_TRUE(db.ok());
        ASSERT_TRUE(run_migrations(**db, {migrations()}).ok());
        ASSERT_TRUE((*db)->session().exec("INSERT INTO schema_version VALUES (999, 0)").ok());
    }
    auto store = DbStore::open(path);
    ASSERT_FALSE(store.ok());
    EXPECT_NE(store.error().message.find("newer"), std::string::npos) << store.error().message;
}

TEST_P(DaemonStore, TokensByHashAndRevocation) {
    auto store = DbStore::open(store_spec());
    ASSERT_TRUE(store.ok());
    auto a = (*store)->insert_token("ci", std::string(64, 'a'), 1);
    auto b = (*store)->insert_token("dev", std::string(64, 'b'), 2);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_FALSE((*store)->insert_token("dup", std::string(64, 'a'), 3).ok()) << "hashes are unique";
    auto found = (*store)->find_token_by_hash(std::string(64, 'b'));
    ASSERT_TRUE(found.ok() && found->has_value());
    EXPECT_EQ((*found)->name, "dev");
    EXPECT_FALSE((*found)->revoked);
    EXPECT_EQ(*(*store)->revoke_token(std::to_string(*b)), 1);
    EXPECT_EQ(*(*store)->revoke_token(std::to_string(*b)), 0) << "already revoked";
    EXPECT_EQ(*(*store)->revoke_token("ci"), 1);
    EXPECT_EQ(*(*store)->revoke_token("nobody"), 0);
    auto list = (*store)->list_tokens();
    ASSERT_TRUE(list.ok());
    ASSERT_EQ(list->size(), 2u);
    EXPECT_TRUE((*list)[0].revoked && (*list)[1].revoked);
}

TEST_P(DaemonStore, SandboxesListCountAndUpdate) {
    auto store = DbStore::open(store_spec());
    ASSERT_TRUE(store.ok());
    int64_t t1 = *(*store)->insert_token("a", std::string(64, '1'), 0);
    int64_t t2 = *(*store)->insert_token("b", std::string(64, '2'), 0);
    ASSERT_TRUE((*store)->insert_sandbox(sample("sb-000000000001", t1, SandboxState::Running, 10)).ok());
    ASSERT_TRUE((*store)->insert_sandbox(sample("sb-000000000002", t1, SandboxState::Deleted, 20)).ok());
    ASSERT_TRUE((*store)->insert_sandbox(sample("sb-000000000003", t2, SandboxState::Creating, 30)).ok());
    EXPECT_FALSE((*store)->insert_sandbox(sample("sb-000000000003", t2, SandboxState::Creating, 30)).ok());
    EXPECT_FALSE((*store)->insert_sandbox(sample("sb-000000000009", 777, SandboxState::Creating, 30)).ok())
        << "foreign keys are on: no sandbox for a token that does not exist";

    auto live = (*store)->list_sandboxes(t1, true);
    ASSERT_TRUE(live.ok());
    ASSERT_EQ(live->size(), 1u);
    EXPECT_EQ((*live)[0].info.id, "sb-000000000001");
    auto all = (*store)->list_sandboxes(0, false);
    ASSERT_TRUE(all.ok());
    ASSERT_EQ(all->size(), 3u);
    EXPECT_EQ((*all)[0].info.id, "sb-000000000003") << "newest first";

    auto r = sample("sb-000000000001", t1, SandboxState::Expired, 10);
    r.info.ended_at_ms = 99;
    r.info.error = "x";
    ASSERT_TRUE((*store)->update_sandbox(r).ok());
    EXPECT_FALSE((*store)->update_sandbox(sample("sb-00000000000f", t1, SandboxState::Running, 1)).ok());
    auto got = (*store)->get_sandbox("sb-000000000001");
    ASSERT_TRUE(got.ok() && got->has_value());
    EXPECT_EQ((*got)->info.state(), SandboxState::Expired);
    EXPECT_EQ((*got)->info.ended_at_ms, 99);

    auto counts = (*store)->count_sandboxes_by_state();
    ASSERT_TRUE(counts.ok());
    EXPECT_EQ(counts->size(), std::size(kAllSandboxStates)) << "every state, zero included";
    EXPECT_EQ(counts->at("expired"), 1);
    EXPECT_EQ(counts->at("deleted"), 1);
    EXPECT_EQ(counts->at("creating"), 1);
    EXPECT_EQ(counts->at("running"), 0);
}

TEST_P(DaemonStore, APausedSandboxKeepsItsPauseAndIsListedAsNotEnded) {
    auto store = DbStore::open(store_spec());
    ASSERT_TRUE(store.ok());
    int64_t t1 = *(*store)->insert_token("a", std::string(64, '1'), 0);
    auto r = sample("sb-000000000001", t1, SandboxState::Paused, 1);
    r.info.auto_pause = true;
    r.info.paused_at_ms = 1234;
    r.info.ttl_left_ms = 56789;
    r.info.paused_bytes = uint64_t(5) << 32;  // past 32 bits: a large guest's memory file
    ASSERT_TRUE((*store)->insert_sandbox(r).ok());
    ASSERT_TRUE((*store)->insert_sandbox(sample("sb-000000000002", t1, SandboxState::Lost, 2)).ok());
    auto got = (*store)->get_sandbox("sb-000000000001");
    ASSERT_TRUE(got.ok() && got->has_value());
    EXPECT_EQ((*got)->info.state(), SandboxState::Paused);
    EXPECT_TRUE((*got)->info.auto_pause);
    EXPECT_EQ((*got)->info.paused_at_ms, 1234);
    EXPECT_EQ((*got)->info.ttl_left_ms, 56789);
    EXPECT_EQ((*got)->info.paused_bytes, uint64_t(5) << 32);
    auto listed = (*store)->list_sandboxes(t1, true);
    ASSERT_TRUE(listed.ok());
    ASSERT_EQ(listed->size(), 1u) << "paused is listed by default, lost is not";
    EXPECT_EQ((*listed)[0].info.id, "sb-000000000001");
    EXPECT_EQ((*store)->count_sandboxes_by_state()->at("paused"), 1);
}

TEST_P(DaemonStore, Snapshots) {
    auto store = DbStore::open(store_spec());
    ASSERT_TRUE(store.ok());
    int64_t t1 = *(*store)->insert_token("a", std::string(64, '1'), 0);
    SnapshotRecord s;
    s.info = SnapshotInfo{"snap-00000000000a", "base", t1, "sb-000000000001", "tiny", 5, 4096, 1, 256};
    s.dir = "/data/snapshots/snap-00000000000a";
    ASSERT_TRUE((*store)->insert_snapshot(s).ok());
    auto got = (*store)->get_snapshot("snap-00000000000a");
    ASSERT_TRUE(got.ok() && got->has_value());
    EXPECT_EQ((*got)->info.name, "base");
    EXPECT_EQ((*got)->info.size_bytes, 4096u);
    EXPECT_EQ((*got)->dir, s.dir);
    EXPECT_EQ((*store)->list_snapshots(t1)->size(), 1u);
    EXPECT_EQ((*store)->list_snapshots(t1 + 1)->size(), 0u);
    ASSERT_TRUE((*store)->delete_snapshot("snap-00000000000a").ok());
    EXPECT_FALSE((*store)->get_snapshot("snap-00000000000a")->has_value());
}

TEST_P(DaemonStore, ClosedStoreFailsCleanly) {
    auto store = DbStore::open(store_spec());
    ASSERT_TRUE(store.ok());
    (*store)->close();
    (*store)->close();
    EXPECT_FALSE((*store)->list_tokens().ok());
}

INSTANTIATE_ENGINE_TESTS(DaemonStore);
