// The SQLite schema as ordered migrations; schema_version records which ran.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "base/sqlite_db.h"

namespace kiln::daemon {

struct Migration {
    int version;      // 1, 2, 3... in order, never reused
    const char* sql;  // run in one transaction with the schema_version row
};

const std::vector<Migration>& migrations();

// Applies every migration above the database's version, in order. A database newer than this
// kilnd (a version it does not know) is refused rather than written to.
Status migrate(SqliteDb& db);
Result<int> schema_version(SqliteDb& db);

}  // namespace kiln::daemon
