// The SQLite engine behind Db: the sqlite3 C API behind Result (see db.h).
#include <sqlite3.h>

#include "base/db_connection.h"

namespace kiln::db_detail {
namespace {

Error sqlite_error(sqlite3* db, const std::string& what) {
    return make_error(ErrorCode::StoreFailed, what + ": " + (db ? sqlite3_errmsg(db) : "the store is closed"));
}

class SqliteStatement final : public StatementImpl {
public:
    SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : m_db(db), m_stmt(stmt) {}
    ~SqliteStatement() override { sqlite3_finalize(m_stmt); }

    void bind(int index, int64_t value) override { sqlite3_bind_int64(m_stmt, index, value); }
    void bind(int index, std::string_view value) override {
        sqlite3_bind_text(m_stmt, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    }
    void bind(int index, double value) override { sqlite3_bind_double(m_stmt, index, value); }

    Result<bool> step() override {
        int rc = sqlite3_step(m_stmt);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        return make_error(ErrorCode::StoreFailed, std::string("sqlite: ") + sqlite3_errmsg(m_db));
    }

    int64_t column_int(int index) const override { return sqlite3_column_int64(m_stmt, index); }
    double column_double(int index) const override { return sqlite3_column_double(m_stmt, index); }
    std::string column_text(int index) const override {
        const unsigned char* text = sqlite3_column_text(m_stmt, index);
        int n = sqlite3_column_bytes(m_stmt, index);
        return text ? std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(n)) : std::string();
    }

private:
    sqlite3* m_db;
    sqlite3_stmt* m_stmt;
};

class SqliteConnection final : public Connection {
public:
    explicit SqliteConnection(sqlite3* db) : m_db(db) {}
    ~SqliteConnection() override { close(); }

    Status exec(const std::string& sql) override {
        if (!m_db) return sqlite_error(m_db, "exec");
        char* msg = nullptr;
        int rc = sqlite3_exec(m_db, sql.c_str(), nullptr, nullptr, &msg);
        if (rc != SQLITE_OK) {
            std::string text = msg ? msg : sqlite3_errstr(rc);
            sqlite3_free(msg);
            return make_error(ErrorCode::StoreFailed, "sqlite: " + text);
        }
        return ok_status();
    }

    Result<std::unique_ptr<StatementImpl>> prepare(const std::string& sql) override {
        if (!m_db) return sqlite_error(m_db, "prepare");
        sqlite3_stmt* stmt = nullptr;
        if (sqlite3_prepare_v2(m_db, sql.c_str(), static_cast<int>(sql.size()), &stmt, nullptr) != SQLITE_OK)
            return sqlite_error(m_db, "prepare");
        return std::unique_ptr<StatementImpl>(new SqliteStatement(m_db, stmt));
    }

    int changes() const override { return m_db ? sqlite3_changes(m_db) : 0; }
    // IMMEDIATE: the write lock is taken at BEGIN, so two writers never deadlock upgrading.
    Status begin() override { return exec("BEGIN IMMEDIATE"); }
    Status commit() override { return exec("COMMIT"); }
    void rollback() override { (void)exec("ROLLBACK"); }

    void close() override {
        if (!m_db) return;
        sqlite3_wal_checkpoint_v2(m_db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
        sqlite3_close_v2(m_db);
        m_db = nullptr;
    }

private:
    sqlite3* m_db;
};

}  // namespace

Result<std::unique_ptr<Connection>> open_sqlite(const std::string& path) {
    sqlite3* raw = nullptr;
    // Serialized mode (FULLMUTEX): even a call made outside a Session (a statement finalized late)
    // cannot corrupt the connection.
    int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
        if (raw) sqlite3_close(raw);
        return make_error(ErrorCode::StoreFailed, "open " + path + ": " + msg);
    }
    auto connection = std::make_unique<SqliteConnection>(raw);
    sqlite3_busy_timeout(raw, 5000);
    TRY(connection->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"));
    // journal_mode answers with the mode it got: a file system without shared memory refuses WAL.
    auto check = TRY(connection->prepare("PRAGMA journal_mode"));
    if (TRY(check->step()) && check->column_text(0) != "wal")
        return make_error(ErrorCode::StoreFailed, path + ": SQLite could not enable WAL (journal_mode is " + check->column_text(0) + ")");
    check.reset();
    return std::unique_ptr<Connection>(std::move(connection));
}

}  // namespace kiln::db_detail
