// The database helpers under every store (on SQLite and PostgreSQL): a table's column list made into statements (and bound and
// read back in the same order), and the migration runner's rules.
#include <gtest/gtest.h>

#include "base/db_migrations.h"
#include "base/db_table.h"
#include "daemon_test_dir.h"
#include "pg_test_server.h"

using namespace kiln;

namespace {

struct Inner {
    double ratio = 0;
};

struct Thing {
    int64_t id = 0;
    std::string name;
    bool flag = false;
    uint32_t small = 0;
    Inner inner;
    std::string upper;  // stored lower case
};

const DbTable<Thing>& things(DbTable<Thing>::Key key = DbTable<Thing>::Key::Given) {
    static const DbTable<Thing> given("things", {column<Thing>("id", &Thing::id), column<Thing>("name", &Thing::name),
                                                     column<Thing>("flag", &Thing::flag), column<Thing>("small", &Thing::small),
                                                     column<Thing>("ratio", &Thing::inner, &Inner::ratio),
                                                     computed_column<Thing>(
                                                         "lower",
                                                         [](const Thing& t) {
                                                             std::string s = t.upper;
                                                             for (auto& c : s) c = static_cast<char>(std::tolower(c));
                                                             return s;
                                                         },
                                                         [](Thing& t, const std::string& v) -> Status {
                                                             if (v == "bad") return make_error(ErrorCode::StoreFailed, "not this");
                                                             t.upper = v;
                                                             for (auto& c : t.upper) c = static_cast<char>(std::toupper(c));
                                                             return ok_status();
                                                         })});
    static const DbTable<Thing> generated("things", {column<Thing>("id", &Thing::id), column<Thing>("name", &Thing::name)},
                                              DbTable<Thing>::Key::Generated);
    return key == DbTable<Thing>::Key::Given ? given : generated;
}

// Types both engines take as they are (a test's own table, not a migration).
const std::string kThingsTable =
    "CREATE TABLE things (id BIGINT PRIMARY KEY, name TEXT, flag BIGINT, small BIGINT, ratio DOUBLE PRECISION, lower TEXT)";

class DbTableStore : public test::EngineTest {};
class DbMigrations : public test::EngineTest {};

}  // namespace

TEST(DbTable, MakesEveryStatementFromOneColumnList) {
    const auto& t = things();
    EXPECT_EQ(t.columns(), "id, name, flag, small, ratio, lower");
    EXPECT_EQ(t.select(), "SELECT id, name, flag, small, ratio, lower FROM things");
    EXPECT_EQ(t.insert(), "INSERT INTO things (id, name, flag, small, ratio, lower) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    EXPECT_EQ(t.upsert(),
              "INSERT INTO things (id, name, flag, small, ratio, lower) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO "
              "UPDATE SET name = excluded.name, flag = excluded.flag, small = excluded.small, ratio = excluded.ratio, "
              "lower = excluded.lower");
    EXPECT_EQ(t.update(), "UPDATE things SET name = ?2, flag = ?3, small = ?4, ratio = ?5, lower = ?6 WHERE id = ?1");
    const auto& g = things(DbTable<Thing>::Key::Generated);
    EXPECT_EQ(g.insert(), "INSERT INTO things (name) VALUES (?2)") << "a generated key is left to the database";
}

TEST_P(DbTableStore, BindsAndReadsBackInTheSameOrder) {
    auto db = Db::open(store_spec());
    ASSERT_TRUE(db.ok());
    auto s = (*db)->session();
    ASSERT_TRUE(s.exec(kThingsTable).ok());
    const auto& t = things();
    Thing a{7, "seven", true, 4000000000u, {0.25}, "MiXed"};
    {
        auto ins = s.prepare(t.insert());
        ASSERT_TRUE(ins.ok());
        t.bind(*ins, a);
        ASSERT_TRUE(ins->run().ok());
    }
    {
        auto raw = s.prepare("SELECT lower FROM things");
        ASSERT_TRUE(raw.ok() && *raw->step());
        EXPECT_EQ(raw->column_text(0), "mixed");
    }
    a.name = "changed";
    a.flag = false;
    {
        auto upd = s.prepare(t.update());
        ASSERT_TRUE(upd.ok());
        t.bind(*upd, a);
        ASSERT_TRUE(upd->run().ok());
        EXPECT_EQ(s.changes(), 1);
    }
    auto sel = s.prepare(t.select() + " WHERE id = 7");
    ASSERT_TRUE(sel.ok() && *sel->step());
    auto back = t.read(*sel);
    ASSERT_TRUE(back.ok()) << back.error().to_string();
    EXPECT_EQ(back->id, 7);
    EXPECT_EQ(back->name, "changed");
    EXPECT_FALSE(back->flag);
    EXPECT_EQ(back->small, 4000000000u);
    EXPECT_EQ(back->inner.ratio, 0.25);
    EXPECT_EQ(back->upper, "MIXED");
}

TEST_P(DbTableStore, AValueAColumnRefusesNamesTheTableRowAndColumn) {
    auto db = Db::open(store_spec());
    ASSERT_TRUE(db.ok());
    auto s = (*db)->session();
    ASSERT_TRUE(s.exec(kThingsTable + std::string(";"
                       "INSERT INTO things VALUES (9, 'n', 0, 0, 0, 'bad')")).ok());
    auto sel = s.prepare(things().select());
    ASSERT_TRUE(sel.ok() && *sel->step());
    auto row = things().read(*sel);
    ASSERT_FALSE(row.ok());
    EXPECT_EQ(row.error().message, "table things, row id '9', column lower: not this");
}

TEST_P(DbMigrations, RunsWhatIsMissingInVersionOrderAcrossModules) {
    auto db = Db::open(store_spec());
    ASSERT_TRUE(db.ok());
    // Module b's 2 comes between module a's 1 and 3: it sees a's table 1 and a's 3 sees its own.
    Migrations a = {{1, "CREATE TABLE one (x INTEGER)"}, {3, "INSERT INTO two VALUES (3)"}};
    Migrations b = {{2, "CREATE TABLE two (y INTEGER); INSERT INTO one VALUES (2)"}};
    ASSERT_TRUE(run_migrations(**db, {a}).ok() == false) << "3 needs table two, made by 2";
    EXPECT_EQ(*schema_version(**db), 1) << "1 ran; 3 failed and rolled back";
    ASSERT_TRUE(run_migrations(**db, {a, b}).ok());
    EXPECT_EQ(*schema_version(**db), 3);
    auto s = (*db)->session();
    auto q = s.prepare("SELECT (SELECT COUNT(*) FROM one), (SELECT y FROM two), (SELECT COUNT(*) FROM schema_version)");
    ASSERT_TRUE(q.ok() && *q->step());
    EXPECT_EQ(q->column_int(0), 1);
    EXPECT_EQ(q->column_int(1), 3);
    EXPECT_EQ(q->column_int(2), 3);
}

TEST_P(DbMigrations, RefusesDuplicatesAndUnknownVersions) {
    auto db = Db::open(store_spec());
    ASSERT_TRUE(db.ok());
    auto dup = run_migrations(**db, {{{1, "SELECT 1"}}, {{1, "SELECT 2"}}});
    ASSERT_FALSE(dup.ok());
    EXPECT_NE(dup.error().message.find("declared twice"), std::string::npos) << dup.error().message;
    ASSERT_TRUE(run_migrations(**db, {{{1, "SELECT 1"}, {2, "SELECT 2"}}}).ok());
    auto older = run_migrations(**db, {{{1, "SELECT 1"}}});
    ASSERT_FALSE(older.ok()) << "a file that ran 2 is not for a program that knows only 1";
    EXPECT_NE(older.error().message.find("newer"), std::string::npos) << older.error().message;
}

INSTANTIATE_ENGINE_TESTS(DbMigrations);
INSTANTIATE_ENGINE_TESTS(DbTableStore);
