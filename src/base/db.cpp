// Db: the sqlite3 C API behind Result (see sqlite_db.h).
#include "base/db.h"

#include <sqlite3.h>

namespace kiln {

DbStatement::~DbStatement() {
    if (m_stmt) sqlite3_finalize(m_stmt);
}

DbStatement& DbStatement::bind(int index, int64_t value) {
    sqlite3_bind_int64(m_stmt, index, value);
    return *this;
}

DbStatement& DbStatement::bind(int index, std::string_view value) {
    sqlite3_bind_text(m_stmt, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    return *this;
}

DbStatement& DbStatement::bind(int index, double value) {
    sqlite3_bind_double(m_stmt, index, value);
    return *this;
}

Result<bool> DbStatement::step() {
    int rc = sqlite3_step(m_stmt);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return make_error(ErrorCode::StoreFailed, std::string("sqlite: ") + sqlite3_errmsg(m_db));
}

Status DbStatement::run() {
    for (;;) {
        bool row = TRY(step());
        if (!row) return ok_status();
    }
}

int64_t DbStatement::column_int(int index) const { return sqlite3_column_int64(m_stmt, index); }
double DbStatement::column_double(int index) const { return sqlite3_column_double(m_stmt, index); }
std::string DbStatement::column_text(int index) const {
    const unsigned char* text = sqlite3_column_text(m_stmt, index);
    int n = sqlite3_column_bytes(m_stmt, index);
    return text ? std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(n)) : std::string();
}

Result<std::shared_ptr<Db>> Db::open(const std::string& path) {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
        if (raw) sqlite3_close(raw);
        return make_error(ErrorCode::StoreFailed, "open " + path + ": " + msg);
    }
    std::shared_ptr<Db> db(new Db(raw));
    sqlite3_busy_timeout(raw, 5000);
    auto s = db->session();
    TRY(s.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"));
    // journal_mode answers with the mode it got: a file system without shared memory refuses WAL.
    auto check = TRY(s.prepare("PRAGMA journal_mode"));
    if (TRY(check.step()) && check.column_text(0) != "wal")
        return make_error(ErrorCode::StoreFailed, path + ": SQLite could not enable WAL (journal_mode is " + check.column_text(0) + ")");
    return db;
}

Db::~Db() { close(); }

void Db::close() {
    std::lock_guard lock(m_mutex);
    if (!m_db) return;
    sqlite3_wal_checkpoint_v2(m_db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
    sqlite3_close_v2(m_db);
    m_db = nullptr;
}

Error Db::error(const std::string& what) const {
    return make_error(ErrorCode::StoreFailed, what + ": " + (m_db ? sqlite3_errmsg(m_db) : "the store is closed"));
}

Status Db::Session::exec(const std::string& sql) {
    sqlite3* db = m_db->m_db;
    if (!db) return m_db->error("exec");
    char* msg = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
    if (rc != SQLITE_OK) {
        std::string text = msg ? msg : sqlite3_errstr(rc);
        sqlite3_free(msg);
        return make_error(ErrorCode::StoreFailed, "sqlite: " + text);
    }
    return ok_status();
}

Result<DbStatement> Db::Session::prepare(const std::string& sql) {
    sqlite3* db = m_db->m_db;
    if (!db) return m_db->error("prepare");
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &stmt, nullptr) != SQLITE_OK)
        return m_db->error("prepare");
    return DbStatement(db, stmt);
}

int64_t Db::Session::last_insert_rowid() const { return m_db->m_db ? sqlite3_last_insert_rowid(m_db->m_db) : 0; }
int Db::Session::changes() const { return m_db->m_db ? sqlite3_changes(m_db->m_db) : 0; }

}  // namespace kiln
