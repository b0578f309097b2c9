// Db: one database connection, shared by every store of a kilnd (the daemon's tables, CI's and
// GitHub's) and by every thread that uses them. Two engines sit behind it (Db::engine()):
// - SQLite: a file (kilnd.db in the data dir), the embedded default;
// - PostgreSQL: a `postgresql://` URL, the store a fleet of kilnd hosts shares.
// Stores write their SQL once, in the dialect both accept: `?N` / `?` placeholders (rewritten to
// `$N` for PostgreSQL), INSERT .. ON CONFLICT, RETURNING, no engine-only functions.
//
// All work on the connection goes through a Session, which holds the connection's mutex for as
// long as it lives: a statement's bind/step/column calls, changes() after it, and a transaction's
// BEGIN .. COMMIT never interleave with another thread's. The mutex is a leaf: nothing else is
// locked while a Session lives, so it cannot take part in a deadlock. On PostgreSQL this means one
// connection per kilnd and its statements one at a time: kilnd's store calls are short, single-row
// and far fewer than one connection serves; a pool would buy little and cost a transaction model.
//
// A PostgreSQL that restarts is survived: a connection found broken is re-made (and a statement
// that cannot have done anything yet is retried once); while the server cannot be reached every
// call fails with ErrorCode::StoreUnavailable ("the store is unavailable: ..."), which the API
// answers with 503.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "base/result.h"

namespace kiln {

class Db;
namespace db_detail {
class Connection;
class StatementImpl;
}  // namespace db_detail

enum class DbEngine { Sqlite, Postgres };
const char* db_engine_name(DbEngine engine);  // "sqlite", "postgresql"

// Whether `spec` names a PostgreSQL database (a postgresql:// or postgres:// URL) rather than a
// SQLite file.
bool is_postgres_url(std::string_view spec);

// `spec` for a log or an error: a URL's password (any scheme) replaced by "***".
std::string redact_store_spec(std::string_view spec);

// A store call's error as a service returns it: StoreUnavailable as it is (the API answers 503
// with its reason; the caller may retry), anything else Internal, "store: <message>".
Error store_error(const Error& error);

// One prepared statement; bind by 1-based index, step, read columns by 0-based index. Use it
// only while the Session that prepared it lives (declare the Session first). A parameter left
// unbound is NULL.
class DbStatement {
public:
    ~DbStatement();
    DbStatement(DbStatement&& other) noexcept;
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
    explicit DbStatement(std::unique_ptr<db_detail::StatementImpl> impl);
    std::unique_ptr<db_detail::StatementImpl> m_impl;
};

class Db {
public:
    // Opens the store `spec` names: a `postgresql://` (or `postgres://`) URL, or else a SQLite
    // file path.
    // SQLite: opens (creating) the file with WAL, a 5 s busy timeout (for other processes on the
    // same file, e.g. `kilnd token create` beside a running kilnd), foreign keys and
    // synchronous=NORMAL.
    // PostgreSQL: connects (5 s connect timeout unless the URL sets one); the database must exist.
    static Result<std::shared_ptr<Db>> open(const std::string& spec);
    ~Db();
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    DbEngine engine() const { return m_engine; }

    // The connection held by one thread for one unit of work (see the file comment).
    class Session {
    public:
        Session(Session&&) = default;
        DbEngine engine() const { return m_db->m_engine; }
        // Appended to a SELECT inside transaction(): " FOR UPDATE [SKIP LOCKED]" on PostgreSQL,
        // where a transaction locks the rows it reads only this way (READ COMMITTED); "" on
        // SQLite, whose write transaction (BEGIN IMMEDIATE) already excludes every other writer.
        std::string for_update(bool skip_locked = false) const {
            if (engine() == DbEngine::Sqlite) return "";
            return skip_locked ? " FOR UPDATE SKIP LOCKED" : " FOR UPDATE";
        }
        Status exec(const std::string& sql);  // one or more statements, no parameters, no results
        Result<DbStatement> prepare(const std::string& sql);
        int changes() const;  // rows changed by the last statement
        // BEGIN (IMMEDIATE on SQLite: the write lock up front), body(), COMMIT; ROLLBACK instead
        // when body (or the COMMIT) fails. `body` returns a Status or a Result<T>; its result is
        // returned.
        template <class Body>
        auto transaction(Body&& body) -> decltype(body());

    private:
        friend class Db;
        explicit Session(Db& db) : m_db(&db), m_lock(db.m_mutex) {}
        Status begin();
        Status commit();
        void rollback();
        Db* m_db;
        std::unique_lock<std::mutex> m_lock;
    };

    // Waits for the connection (other threads' sessions end first).
    Session session() { return Session(*this); }
    // SQLite: WAL checkpoint, then close. PostgreSQL: disconnect. Every later statement fails
    // ("the store is closed"). Idempotent. Not from inside a Session (it waits for the connection).
    void close();

private:
    Db(DbEngine engine, std::unique_ptr<db_detail::Connection> connection);

    std::mutex m_mutex;  // held by the live Session
    DbEngine m_engine;
    std::unique_ptr<db_detail::Connection> m_connection;
};

template <class Body>
auto Db::Session::transaction(Body&& body) -> decltype(body()) {
    TRY(begin());
    auto result = body();
    if (!result.ok()) {
        rollback();
        return result;
    }
    if (auto committed = commit(); !committed.ok()) {
        rollback();
        return std::move(committed).error();
    }
    return result;
}

}  // namespace kiln
