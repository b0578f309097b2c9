// The two text rewrites that let one SQL text serve both engines on PostgreSQL: placeholders
// (SQLite's `?N` / `?` to `$N`) and migration types (SQLite's names to PostgreSQL's).
#pragma once

#include <string>
#include <string_view>

namespace kiln::db_detail {

struct PgStatementText {
    std::string sql;     // with $1..$n
    int parameters = 0;  // n: the highest parameter number used
};

// `?N` becomes `$N`; a bare `?` takes the number after the highest used so far (as SQLite numbers
// it). Text inside '...' literals, "..." identifiers and -- or /* */ comments is left alone.
PgStatementText pg_placeholders(std::string_view sql);

// A migration written for SQLite, in PostgreSQL's types: `INTEGER PRIMARY KEY AUTOINCREMENT` an
// identity column, INTEGER BIGINT (SQLite's integers are 64-bit), REAL DOUBLE PRECISION. Only
// whole upper-case words outside literals are changed.
std::string pg_schema(std::string_view sql);

}  // namespace kiln::db_detail
