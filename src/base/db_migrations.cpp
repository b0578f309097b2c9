// run_migrations: one version table for every module's migrations (see db_migrations.h).
#include "base/db_migrations.h"

#include <algorithm>
#include <set>
#include <string>

#include "base/clock.h"
#include "base/db_pg_dialect.h"
#include "base/json_log.h"

namespace kiln {
namespace {

constexpr const char* kVersionTable =
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)";

// The advisory lock's key on PostgreSQL: any fixed number, the same in every kilnd ("kiln").
constexpr const char* kLock = "SELECT pg_advisory_lock(1801677934)";
constexpr const char* kUnlock = "SELECT pg_advisory_unlock(1801677934)";

std::string migration_text(DbEngine engine, const Migration& m) {
    if (engine == DbEngine::Sqlite) return m.sql;
    return m.postgres_sql ? std::string(m.postgres_sql) : db_detail::pg_schema(m.sql);
}

std::string version_table(DbEngine engine) {
    return engine == DbEngine::Sqlite ? std::string(kVersionTable) : db_detail::pg_schema(kVersionTable);
}

Result<std::set<int>> applied_versions(Db::Session& s) {
    TRY(s.exec(version_table(s.engine())));
    auto select = TRY(s.prepare("SELECT version FROM schema_version"));
    std::set<int> out;
    while (TRY(select.step())) out.insert(static_cast<int>(select.column_int(0)));
    return out;
}

Status apply_missing(Db::Session& s, const Migrations& all, const std::set<int>& known, int newest) {
    auto applied = TRY(applied_versions(s));
    for (int v : applied)
        if (!known.count(v))
            return make_error(ErrorCode::StoreFailed, "the database has schema version " + std::to_string(v) +
                                                          ", newer than this kilnd knows (" + std::to_string(newest) +
                                                          "): it was written by a newer kilnd");
    nlohmann::json ran = nlohmann::json::array();
    for (const auto& m : all) {
        if (applied.count(m.version)) continue;
        // Asked again inside the transaction: on SQLite another process (a second kilnd, `kilnd
        // token` beside a starting kilnd) may have applied it since the list was read, and only
        // the write lock BEGIN IMMEDIATE takes makes the check and the change one step.
        auto did = s.transaction([&]() -> Result<bool> {
            auto seen = TRY(s.prepare("SELECT 1 FROM schema_version WHERE version = ?"));
            if (TRY(seen.bind(1, int64_t(m.version)).step())) return false;
            TRY(s.exec(migration_text(s.engine(), m)));
            auto row = TRY(s.prepare("INSERT INTO schema_version(version, applied_at_ms) VALUES (?, ?)"));
            TRY(row.bind(1, int64_t(m.version)).bind(2, now_unix_ms()).run());
            return true;
        });
        if (!did.ok())
            return make_error(ErrorCode::StoreFailed, "migration " + std::to_string(m.version) + ": " + did.error().message);
        if (*did) ran.push_back(m.version);
    }
    if (!ran.empty()) log::info("store: migrations applied", {{"versions", ran}});
    return ok_status();
}

}  // namespace

Result<int> schema_version(Db& db) {
    auto s = db.session();
    auto applied = TRY(applied_versions(s));
    return applied.empty() ? 0 : *applied.rbegin();
}

Status run_migrations(Db& db, const std::vector<Migrations>& modules) {
    Migrations all;
    for (const auto& module : modules) all.insert(all.end(), module.begin(), module.end());
    std::sort(all.begin(), all.end(), [](const Migration& a, const Migration& b) { return a.version < b.version; });
    std::set<int> known;
    for (const auto& m : all)
        if (!known.insert(m.version).second)
            return make_error(ErrorCode::StoreFailed, "migration version " + std::to_string(m.version) + " is declared twice");
    int newest = all.empty() ? 0 : all.back().version;

    auto s = db.session();
    if (db.engine() == DbEngine::Sqlite) return apply_missing(s, all, known, newest);
    TRY(s.exec(kLock));
    auto applied = apply_missing(s, all, known, newest);
    (void)s.exec(kUnlock);  // a connection that broke has released it already
    return applied;
}

}  // namespace kiln
