// Schema migrations of one SQLite file shared by several modules (kilnd.db: the daemon's tables,
// CI's jobs and bakes, GitHub's deliveries). Each module declares its own list; the program that
// owns the file (src/kilnd) hands every module's list to run_migrations, which applies them in
// one global order and records each in one table, schema_version.
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
};

using Migrations = std::vector<Migration>;

// Applies, in version order, every migration of `modules` that schema_version does not record.
// Refuses a file that records a version none of `modules` declares (it was written by a newer
// program: not written to), and a version declared twice (a numbering mistake).
Status run_migrations(Db& db, const std::vector<Migrations>& modules);

// The highest version schema_version records (0 for a new file).
Result<int> schema_version(Db& db);

}  // namespace kiln
