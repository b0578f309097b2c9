// Schema migrations of one database shared by several modules (kilnd's store: the daemon's tables,
// CI's jobs and bakes, GitHub's deliveries). Each module declares its own list; the program that
// owns the store (src/kilnd) hands every module's list to run_migrations, which applies them in
// one global order and records each in one table, schema_version. One list serves both engines:
// on PostgreSQL the SQL's types are mapped (pg_schema in db_pg_dialect.h: INTEGER -> BIGINT,
// REAL -> DOUBLE PRECISION, INTEGER PRIMARY KEY AUTOINCREMENT -> an identity column), or a
// migration gives PostgreSQL a text of its own where SQLite's cannot be parsed there.
#pragma once

#include <vector>

#include "base/result.h"
#include "base/db.h"

namespace kiln {

struct Migration {
    // Global across every module of the file, unique, never reused: it is the migration's row in
    // schema_version and its place in the order. A new migration takes the next number above all
    // existing ones, whichever module it belongs to.
    int version;
    const char* sql;  // run in one transaction with its schema_version row
    // PostgreSQL's text, run as it is, when `sql` (type-mapped) will not do there; null: `sql`.
    const char* postgres_sql = nullptr;
};

using Migrations = std::vector<Migration>;

// Applies, in version order, every migration of `modules` that schema_version does not record.
// Refuses a store that records a version none of `modules` declares (it was written by a newer
// program: not written to), and a version declared twice (a numbering mistake). On PostgreSQL,
// several kilnds starting at once take turns (a session advisory lock around the whole run): the
// first applies what is missing, the others find it applied.
Status run_migrations(Db& db, const std::vector<Migrations>& modules);

// The highest version schema_version records (0 for a new file).
Result<int> schema_version(Db& db);

}  // namespace kiln
