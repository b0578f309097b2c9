// Db: the engine-neutral front (see db.h); the engines are db_sqlite.cpp and db_postgres.cpp.
#include "base/db.h"

#include "base/db_connection.h"

namespace kiln {

const char* db_engine_name(DbEngine engine) {
    switch (engine) {
        case DbEngine::Sqlite: return "sqlite";
        case DbEngine::Postgres: return "postgresql";
    }
    return "unknown";
}

bool is_postgres_url(std::string_view spec) {
    return spec.starts_with("postgresql://") || spec.starts_with("postgres://");
}

std::string redact_store_spec(std::string_view spec) {
    // scheme://user:password@host...: the password is everything between the first ':' after the
    // scheme and the '@' that ends the user info. (Any scheme: a mistyped one is shown in errors.)
    size_t scheme = spec.find("://");
    if (scheme == std::string_view::npos) return std::string(spec);
    size_t start = scheme + 3;
    size_t at = spec.find('@', start);
    size_t slash = spec.find('/', start);
    if (at == std::string_view::npos || (slash != std::string_view::npos && slash < at)) return std::string(spec);
    size_t colon = spec.find(':', start);
    if (colon == std::string_view::npos || colon > at) return std::string(spec);
    return std::string(spec.substr(0, colon + 1)) + "***" + std::string(spec.substr(at));
}

Error store_error(const Error& error) {
    if (error.code == ErrorCode::StoreUnavailable) return error;
    return make_error(ErrorCode::Internal, "store: " + error.message);
}

DbStatement::DbStatement(std::unique_ptr<db_detail::StatementImpl> impl) : m_impl(std::move(impl)) {}
DbStatement::DbStatement(DbStatement&& other) noexcept = default;
DbStatement::~DbStatement() = default;

DbStatement& DbStatement::bind(int index, int64_t value) {
    m_impl->bind(index, value);
    return *this;
}

DbStatement& DbStatement::bind(int index, std::string_view value) {
    m_impl->bind(index, value);
    return *this;
}

DbStatement& DbStatement::bind(int index, double value) {
    m_impl->bind(index, value);
    return *this;
}

Result<bool> DbStatement::step() { return m_impl->step(); }

Status DbStatement::run() {
    for (;;) {
        bool row = TRY(step());
        if (!row) return ok_status();
    }
}

int64_t DbStatement::column_int(int index) const { return m_impl->column_int(index); }
double DbStatement::column_double(int index) const { return m_impl->column_double(index); }
std::string DbStatement::column_text(int index) const { return m_impl->column_text(index); }

Db::Db(DbEngine engine, std::unique_ptr<db_detail::Connection> connection)
    : m_engine(engine), m_connection(std::move(connection)) {}

Result<std::shared_ptr<Db>> Db::open(const std::string& spec) {
    if (is_postgres_url(spec)) {
        auto connection = TRY(db_detail::open_postgres(spec));
        return std::shared_ptr<Db>(new Db(DbEngine::Postgres, std::move(connection)));
    }
    auto connection = TRY(db_detail::open_sqlite(spec));
    return std::shared_ptr<Db>(new Db(DbEngine::Sqlite, std::move(connection)));
}

Db::~Db() { close(); }

void Db::close() {
    std::lock_guard lock(m_mutex);
    m_connection->close();
}

Status Db::Session::exec(const std::string& sql) { return m_db->m_connection->exec(sql); }

Result<DbStatement> Db::Session::prepare(const std::string& sql) {
    return DbStatement(TRY(m_db->m_connection->prepare(sql)));
}

int Db::Session::changes() const { return m_db->m_connection->changes(); }
Status Db::Session::begin() { return m_db->m_connection->begin(); }
Status Db::Session::commit() { return m_db->m_connection->commit(); }
void Db::Session::rollback() { m_db->m_connection->rollback(); }

}  // namespace kiln
