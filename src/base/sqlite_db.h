// SqliteDb: one sqlite3 connection, shared by every store of a database file (kilnd.db holds the
// daemon's tables, CI's and GitHub's) and by every thread that uses them.
//
// All work on the connection goes through a Session, which holds the connection's mutex for as
// long as it lives: a statement's bind/step/column calls, changes() and last_insert_rowid() after
// it, and a transaction's BEGIN .. COMMIT never interleave with another thread's. The connection
// is also opened in SQLite's serialized mode (FULLMUTEX), so that even a call made outside a
// Session (a statement finalized late) cannot corrupt it. The mutex is a leaf: nothing else is
// locked while a Session lives, so it cannot take part in a deadlock.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "base/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace kiln {

class SqliteDb;

// One prepared statement; bind by 1-based index, step, read columns by 0-based index. Use it
// only while the Session that prepared it lives (declare the Session first).
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

class SqliteDb {
public:
    // Opens (creating) `path` with WAL, a 5 s busy timeout (for other processes on the same file,
    // e.g. `kilnd token create` beside a running kilnd), foreign keys and synchronous=NORMAL.
    static Result<std::shared_ptr<SqliteDb>> open(const std::string& path);
    ~SqliteDb();
    SqliteDb(const SqliteDb&) = delete;
    SqliteDb& operator=(const SqliteDb&) = delete;

    // The connection held by one thread for one unit of work (see the file comment).
    class Session {
    public:
        Session(Session&&) = default;
        Status exec(const std::string& sql);  // one or more statements, no results
        Result<SqliteStatement> prepare(const std::string& sql);
        int64_t last_insert_rowid() const;
        int changes() const;  // rows changed by the last statement
        // BEGIN IMMEDIATE, body(), COMMIT; ROLLBACK instead when body (or the COMMIT) fails.
        // `body` returns a Status or a Result<T>; its result is returned.
        template <class Body>
        auto transaction(Body&& body) -> decltype(body());

    private:
        friend class SqliteDb;
        explicit Session(SqliteDb& db) : m_db(&db), m_lock(db.m_mutex) {}
        SqliteDb* m_db;
        std::unique_lock<std::mutex> m_lock;
    };

    // Waits for the connection (other threads' sessions end first).
    Session session() { return Session(*this); }
    // WAL checkpoint, then close; every later statement fails ("the store is closed"). Idempotent.
    // Not from inside a Session (it waits for the connection).
    void close();

private:
    explicit SqliteDb(sqlite3* db) : m_db(db) {}
    Error error(const std::string& what) const;

    std::mutex m_mutex;  // held by the live Session
    sqlite3* m_db;
};

template <class Body>
auto SqliteDb::Session::transaction(Body&& body) -> decltype(body()) {
    TRY(exec("BEGIN IMMEDIATE"));
    auto result = body();
    if (!result.ok()) {
        (void)exec("ROLLBACK");
        return result;
    }
    if (auto committed = exec("COMMIT"); !committed.ok()) {
        (void)exec("ROLLBACK");
        return std::move(committed).error();
    }
    return result;
}

}  // namespace kiln
