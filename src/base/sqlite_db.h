// SqliteDb: a thin owned wrapper over one sqlite3 connection and its prepared statements.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace kiln {

class SqliteDb;

// One prepared statement; bind by 1-based index, step, read columns by 0-based index.
class SqliteStatement {
public:
    ~SqliteStatement();
    SqliteStatement(SqliteStatement&& other) noexcept : m_db(other.m_db), m_stmt(other.m_stmt) { other.m_stmt = nullptr; }
    SqliteStatement(const SqliteStatement&) = delete;
    SqliteStatement& operator=(const SqliteStatement&) = delete;

    SqliteStatement& bind(int index, int64_t value);
    SqliteStatement& bind(int index, std::string_view value);
    SqliteStatement& bind(int index, double value);
    // A row is ready (true), done (false), or an error.
    Result<bool> step();
    Status run();  // steps to the end, expecting no rows

    int64_t column_int(int index) const;
    double column_double(int index) const;
    std::string column_text(int index) const;

private:
    friend class SqliteDb;
    SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : m_db(db), m_stmt(stmt) {}
    sqlite3* m_db;
    sqlite3_stmt* m_stmt;
};

// Not thread-safe: the owner serializes calls (SqliteStore holds a mutex).
class SqliteDb {
public:
    // Opens (creating) `path` with WAL, a busy timeout, foreign keys and synchronous=NORMAL.
    static Result<std::unique_ptr<SqliteDb>> open(const std::string& path);
    ~SqliteDb();
    SqliteDb(const SqliteDb&) = delete;
    SqliteDb& operator=(const SqliteDb&) = delete;

    Status exec(const std::string& sql);  // one or more statements, no results
    Result<SqliteStatement> prepare(const std::string& sql);
    int64_t last_insert_rowid() const;
    int changes() const;
    void close();  // WAL checkpoint, then close; idempotent

private:
    explicit SqliteDb(sqlite3* db) : m_db(db) {}
    Error error(const std::string& what) const;
    sqlite3* m_db;
};

}  // namespace kiln
