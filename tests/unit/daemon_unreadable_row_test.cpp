// A sandbox row whose state this kilnd does not know (written behind its back, here with the
// sqlite3 command) is reported loudly, never read as some other state: get is an error naming the
// row and the value, list and the counts skip it and log it, the reconcile leaves it untouched.
#include <gtest/gtest.h>

#include <cstdlib>

#include "daemon/sandboxes/local_sandbox_service.h"
#include "daemon/sandboxes/reconcile.h"
#include "daemon/store/db_store.h"
#include "daemon/templates/template_baker.h"
#include "daemon_test_dir.h"

using namespace kiln;
using namespace kiln::daemon;

namespace {

constexpr const char* kBad = "sb-00000000000b";
constexpr const char* kGood = "sb-00000000000a";

SandboxRecord record(const std::string& id, int64_t owner, SandboxState state, int64_t created) {
    SandboxRecord r;
    r.info = SandboxInfo::from_row(state);
    r.info.id = id;
    r.info.owner_token_id = owner;
    r.info.template_id = "tiny";
    r.info.created_at_ms = created;
    return r;
}

// Runs the sqlite3 command on `db`; its output (one line) without the newline.
std::string sqlite3(const std::string& db, const std::string& sql) {
    std::string cmd = "sqlite3 '" + db + "' \"" + sql + "\"";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return "popen failed";
    char buf[256] = {};
    std::string out = std::fgets(buf, sizeof buf, p) ? buf : "";
    int status = ::pclose(p);
    EXPECT_EQ(status, 0) << cmd;
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

class UnreadableRow : public ::testing::Test {
protected:
    void SetUp() override {
        auto opened = DbStore::open(db());
        ASSERT_TRUE(opened.ok()) << opened.error().to_string();
        store = std::move(*opened);
        owner = *store->insert_token("alice", std::string(64, 'a'), 0);
        ASSERT_TRUE(store->insert_sandbox(record(kGood, owner, SandboxState::Deleted, 10)).ok());
        ASSERT_TRUE(store->insert_sandbox(record(kBad, owner, SandboxState::Running, 20)).ok());
        // Another process writes a state no kilnd knows (the file is in WAL mode: it sees it).
        sqlite3(db(), std::string("UPDATE sandboxes SET state = 'zombie' WHERE id = '") + kBad + "'");
        ASSERT_EQ(stored_state(), "zombie");
    }
    std::string db() const { return dir.path() + "/kilnd.db"; }
    std::string stored_state() { return sqlite3(db(), std::string("SELECT state FROM sandboxes WHERE id = '") + kBad + "'"); }

    test::TempDir dir;
    std::unique_ptr<DbStore> store;
    int64_t owner = 0;
};

}  // namespace

TEST_F(UnreadableRow, GetIsAnErrorNamingTheRowAndTheValue) {
    testing::internal::CaptureStderr();
    auto got = store->get_sandbox(kBad);
    std::string log = testing::internal::GetCapturedStderr();
    ASSERT_FALSE(got.ok()) << "a state that does not parse was read as " << state_name((*got)->info.state());
    EXPECT_EQ(got.error().code, ErrorCode::StoreFailed);
    for (const char* part : {kBad, "zombie", "state", "sandboxes"}) {
        EXPECT_NE(got.error().message.find(part), std::string::npos) << part << " not in: " << got.error().message;
        EXPECT_NE(log.find(part), std::string::npos) << part << " not logged: " << log;
    }
    EXPECT_NE(log.find("\"level\":\"error\""), std::string::npos) << log;
    // The others still read.
    auto good = store->get_sandbox(kGood);
    ASSERT_TRUE(good.ok() && good->has_value());
    EXPECT_EQ((*good)->info.state(), SandboxState::Deleted);
}

TEST_F(UnreadableRow, ListAndCountsSkipItAndLogIt) {
    testing::internal::CaptureStderr();
    auto all = store->list_sandboxes(0, false);
    auto counts = store->count_sandboxes_by_state();
    std::string log = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(all.ok()) << all.error().to_string();
    ASSERT_EQ(all->size(), 1u);
    EXPECT_EQ((*all)[0].info.id, kGood);
    EXPECT_NE(log.find(kBad), std::string::npos) << log;
    ASSERT_TRUE(counts.ok());
    EXPECT_EQ(counts->size(), std::size(kAllSandboxStates)) << "only the states kilnd knows";
    EXPECT_EQ(counts->count("zombie"), 0u);
    EXPECT_EQ(counts->at("deleted"), 1);
    EXPECT_NE(log.find("zombie"), std::string::npos) << log;
    EXPECT_EQ(stored_state(), "zombie") << "reading never rewrites the row";
}

TEST_F(UnreadableRow, ReconcileKeepsGoingAndLeavesTheRowAlone) {
    testing::internal::CaptureStderr();
    auto report = reconcile(*store, dir.path(), "");
    std::string log = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(report.ok()) << report.error().to_string();
    EXPECT_EQ(report->marked_lost, 0);
    EXPECT_NE(log.find(kBad), std::string::npos) << log;
    EXPECT_EQ(stored_state(), "zombie");
}

TEST_F(UnreadableRow, TheServiceAnswersInternalForItAndListsTheRest) {
    TemplateBaker baker(dir.path() + "/templates", vm::AccelMode::Auto, /*spares=*/nullptr);
    ServiceConfig config;
    config.data_dir = dir.path();
    config.spares = nullptr;  // no spare QEMUs
    LocalSandboxService service(config, *store, baker);
    Caller alice{owner, "alice"};
    testing::internal::CaptureStderr();
    auto got = service.get(alice, kBad);
    ListFilter every;
    every.all_states = true;
    auto listed = service.list(alice, every);
    (void)testing::internal::GetCapturedStderr();
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.error().code, ErrorCode::Internal);
    EXPECT_NE(got.error().message.find("zombie"), std::string::npos) << got.error().message;
    EXPECT_NE(got.error().message.find(kBad), std::string::npos) << got.error().message;
    ASSERT_TRUE(listed.ok()) << listed.error().to_string();
    ASSERT_EQ(listed->size(), 1u);
    EXPECT_EQ((*listed)[0].id, kGood);
    EXPECT_FALSE(service.remove(alice, kBad).ok()) << "a row that cannot be read is not deleted blind";
    service.shutdown(true);
    EXPECT_EQ(stored_state(), "zombie");
}
