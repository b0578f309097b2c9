// Db: one sqlite3 connection, shared by every store of a database file (kilnd.db holds the
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

class Db;

// One prepared statement; bind by 1-based index, step, read columns by 0-based index. Use it
// only while the Session that prepared it lives (declare the Session first).
class DbStatement {
public:
    ~DbStatement();
    DbStatement(DbStatement&& other) noexcept : m_db(other.m_db), m_stmt(other.m_stmt) { other.m_stmt = nullptr; }
    DbStatement(const DbStatement&) = delete;
    DbStatement& operator=(const DbStatement&) = delete;

    DbStatement& bind(int index, int64_t value);
    DbStatement& bind(int index, std::string_view value);
    DbStatement& bind(int index, double value);
    // A row is ready (true), done (false), or an error.
    Result<bool> step();
    Status run();  // steps to the end, expecting no rows

    int64_t column_int(int index) const;
    double column_double(int index) const;
    std::string column_text(int index) const;

private:
    friend class Db;
    DbStatement(sqlite3* db, sqlite3_stmt* stmt) : m_db(db), m_stmt(stmt) {}
    sqlite3* m_db;
    sqlite3_stmt* m_stmt;
};

class Db {
public:
    // Opens (creating) `path` with WAL, a 5 s busy timeout (for other processes on the same file,
    // e.g. `kilnd token create` beside a running kilnd), foreign keys and synchronous=NORMAL.
    static Result<std::shared_ptr<Db>> open(const std::string& path);
    ~Db();
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    // The connection held by one thread for one unit of work (see the file comment).
    class Session {
    public:
        Session(Session&&) = default;
        Status exec(const std::string& sql);  // one or more statements, no results
        Result<DbStatement> prepare(const std::string& sql);
        int64_t last_insert_rowid() const;
        int changes() const;  // rows changed by the last statement
        // BEGIN IMMEDIATE, body(), COMMIT; ROLLBACK instead when body (or the COMMIT) fails.
        // `body` returns a Status or a Result<T>; its result is returned.
        template <class Body>
        auto transaction(Body&& body) -> decltype(body());

    private:
        friend class Db;
        explicit Session(Db& db) : m_db(&db), m_lock(db.m_mutex) {}
        Db* m_db;
        std::unique_lock<std::mutex> m_lock;
    };

    // Waits for the connection (other threads' sessions end first).
    Session session() { return Session(*this); }
    // WAL checkpoint, then close; every later statement fails ("the store is closed"). Idempotent.
    // Not from inside a Session (it waits for the connection).
    void close();

private:
    explicit Db(sqlite3* db) : m_db(db) {}
    Error error(const std::string& what) const;

    std::mutex m_mutex;  // held by the live Session
    sqlite3* m_db;
};

template <class Body>
auto Db::Session::transaction(Body&& body) -> decltype(body()) {
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
