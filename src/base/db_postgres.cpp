// The PostgreSQL engine behind Db: libpq, one connection, text-format parameters and results
// (see db.h for what a Session guarantees and why one connection).
//
// Surviving a server restart: before a statement, an idle connection whose socket has something
// to read (a server that shut down sends its FATAL and closes) is checked, and a broken one is
// re-made (PQreset) before the statement is sent, so the common case, "PostgreSQL restarted while
// kilnd was idle", costs nothing and loses nothing. A connection that breaks while a statement is
// in flight is re-made too, but the statement is sent again only when that cannot do anything
// twice: a read, or a BEGIN, outside a transaction. A write may have been applied before the
// connection broke, and a transaction is gone with its connection: those fail with
// StoreUnavailable and the caller decides (the API answers 503). While the server cannot be
// reached, a new attempt is made at most once a second; calls in between fail at once.
#include <libpq-fe.h>
#include <poll.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <vector>

#include "base/db.h"
#include "base/db_connection.h"
#include "base/db_pg_dialect.h"
#include "base/db_pg_connect.h"
#include "base/json_log.h"

namespace kiln::db_detail {
namespace {

// Parameter types (pg_type.h's INT8OID and FLOAT8OID; 0 lets the server infer, right for text):
// typed numbers make `?2 = 0` compare as numbers, not as unknown-typed text.
constexpr Oid kInt8Oid = 20;
constexpr Oid kFloat8Oid = 701;
constexpr auto kReconnectInterval = std::chrono::seconds(1);

Error unavailable(const std::string& why) {
    return make_error(ErrorCode::StoreUnavailable, "the store is unavailable: PostgreSQL: " + why);
}

// Whether sending `sql` again after a broken connection cannot do anything twice.
bool safe_to_resend(std::string_view sql) {
    size_t i = sql.find_first_not_of(" \t\r\n(");
    if (i == std::string_view::npos) return true;
    std::string word;
    for (; i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i])); ++i)
        word += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i])));
    return word == "SELECT" || word == "BEGIN" || word == "SHOW";
}

void ignore_notice(void*, const char*) {}  // "relation already exists, skipping" and the like

class PgConnection;

class PgStatement final : public StatementImpl {
public:
    PgStatement(PgConnection& connection, PgStatementText text)
        : m_connection(connection), m_text(std::move(text)), m_values(static_cast<size_t>(m_text.parameters)),
          m_bound(m_values.size(), false), m_types(m_values.size(), 0) {}
    ~PgStatement() override {
        if (m_result) PQclear(m_result);
    }

    void bind(int index, int64_t value) override { set(index, std::to_string(value), kInt8Oid); }
    void bind(int index, std::string_view value) override { set(index, std::string(value), 0); }
    void bind(int index, double value) override {
        char buf[64];
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
        set(index, ec == std::errc() ? std::string(buf, end) : std::to_string(value), kFloat8Oid);
    }

    Result<bool> step() override;

    int64_t column_int(int index) const override {
        const char* v = value(index);
        if (!v) return 0;
        if (v[0] == 't' && v[1] == '\0') return 1;  // a boolean
        return std::strtoll(v, nullptr, 10);
    }
    double column_double(int index) const override {
        const char* v = value(index);
        return v ? std::strtod(v, nullptr) : 0.0;
    }
    std::string column_text(int index) const override {
        const char* v = value(index);
        return v ? std::string(v, static_cast<size_t>(PQgetlength(m_result, m_row, index))) : std::string();
    }

private:
    void set(int index, std::string value, Oid type) {
        if (index < 1 || index > static_cast<int>(m_values.size())) return;  // as SQLite: out of range is ignored
        auto i = static_cast<size_t>(index - 1);
        m_values[i] = std::move(value);
        m_bound[i] = true;
        m_types[i] = type;
    }
    const char* value(int index) const {
        if (!m_result || m_row < 0 || m_row >= PQntuples(m_result) || index < 0 || index >= PQnfields(m_result)) return nullptr;
        if (PQgetisnull(m_result, m_row, index)) return nullptr;
        return PQgetvalue(m_result, m_row, index);
    }

    PgConnection& m_connection;
    PgStatementText m_text;
    std::vector<std::string> m_values;
    std::vector<bool> m_bound;
    std::vector<Oid> m_types;
    PGresult* m_result = nullptr;
    int m_row = -1;
};

class PgConnection final : public Connection {
public:
    PgConnection(PGconn* conn, std::string where) : m_conn(conn), m_where(std::move(where)) {}
    ~PgConnection() override { close(); }

    // Sends one statement (with parameters when `values` is not null; without, `sql` may hold
    // several) and returns its result, which the caller owns.
    Result<PGresult*> run(const std::string& sql, int n, const Oid* types, const char* const* values) {
        TRY(ensure_connected());
        PGresult* result = send(sql, n, types, values);
        if (PQstatus(m_conn) == CONNECTION_BAD) {
            PQclear(result);
            const bool resend = !m_in_transaction && safe_to_resend(sql);
            log::warn("store: the connection to PostgreSQL broke", {{"where", m_where}, {"resend", resend}});
            if (!resend) {
                const std::string why = one_line(PQerrorMessage(m_conn));
                if (!m_in_transaction)
                    return unavailable("the connection broke while a write ran (" + why +
                                       "); it was not sent again, as it may have been applied");
                m_transaction_lost = true;
                // A COMMIT's outcome is unknown; any other statement's transaction is gone.
                return unavailable("the connection broke during a transaction (" + why + "); " +
                                   (sql == "COMMIT" ? "whether it committed is unknown" : "it was rolled back"));
            }
            TRY(reconnect());
            result = send(sql, n, types, values);
            if (PQstatus(m_conn) == CONNECTION_BAD) {
                PQclear(result);
                return unavailable(one_line(PQerrorMessage(m_conn)));
            }
        }
        auto status = PQresultStatus(result);
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
            std::string message = one_line(result ? PQresultErrorMessage(result) : PQerrorMessage(m_conn));
            PQclear(result);
            return make_error(ErrorCode::StoreFailed, "postgresql: " + message);
        }
        const char* tuples = PQcmdTuples(result);
        m_changes = tuples && *tuples ? std::atoi(tuples) : 0;
        return result;
    }

    Status exec(const std::string& sql) override {
        PQclear(TRY(run(sql, 0, nullptr, nullptr)));
        return ok_status();
    }

    Result<std::unique_ptr<StatementImpl>> prepare(const std::string& sql) override {
        if (!m_conn) return closed();
        // Parsed by the server when first stepped, with the bound values' types.
        return std::unique_ptr<StatementImpl>(new PgStatement(*this, pg_placeholders(sql)));
    }

    int changes() const override { return m_changes; }

    Status begin() override {
        TRY(exec("BEGIN"));
        m_in_transaction = true;
        m_transaction_lost = false;
        return ok_status();
    }
    Status commit() override {
        if (m_transaction_lost) return unavailable("the connection broke during the transaction; it was rolled back");
        auto st = exec("COMMIT");
        m_in_transaction = false;
        return st;
    }
    void rollback() override {
        if (m_conn && PQstatus(m_conn) == CONNECTION_OK && !m_transaction_lost) (void)exec("ROLLBACK");
        m_in_transaction = false;
        m_transaction_lost = false;
    }

    void close() override {
        if (!m_conn) return;
        PQfinish(m_conn);
        m_conn = nullptr;
    }

private:
    PGresult* send(const std::string& sql, int n, const Oid* types, const char* const* values) {
        if (!values) return PQexec(m_conn, sql.c_str());
        return PQexecParams(m_conn, sql.c_str(), n, types, values, nullptr, nullptr, 0);
    }

    static Error closed() { return make_error(ErrorCode::StoreFailed, "the store is closed"); }

    // A connection known or found to be broken is re-made here, before anything is sent on it.
    Status ensure_connected() {
        if (!m_conn) return closed();
        if (m_transaction_lost) return unavailable("the connection broke during the transaction");
        if (PQstatus(m_conn) == CONNECTION_OK && !m_in_transaction) {
            // Idle, nothing is expected from the server but a notice or a notification: what is
            // there to read is read and parsed (PQisBusy; a server that shut down sent a FATAL,
            // which goes to the notice processor) until an EOF shows the connection closed
            // (PQconsumeInput fails and the status turns bad) or nothing is left.
            for (int round = 0; round < 4 && PQstatus(m_conn) == CONNECTION_OK; ++round) {
                pollfd p{PQsocket(m_conn), POLLIN, 0};
                if (p.fd < 0 || poll(&p, 1, 0) <= 0) break;
                if (!PQconsumeInput(m_conn)) break;
                (void)PQisBusy(m_conn);
            }
        }
        if (PQstatus(m_conn) == CONNECTION_OK) return ok_status();
        if (m_in_transaction) {
            m_transaction_lost = true;
            return unavailable("the connection broke during the transaction");
        }
        return reconnect();
    }

    Status reconnect() {
        auto now = std::chrono::steady_clock::now();
        if (!m_down_since_error.empty() && now - m_last_attempt < kReconnectInterval) return unavailable(m_down_since_error);
        m_last_attempt = now;
        PQreset(m_conn);
        if (PQstatus(m_conn) != CONNECTION_OK) {
            std::string why = one_line(PQerrorMessage(m_conn));
            if (m_down_since_error.empty()) log::warn("store: PostgreSQL cannot be reached", {{"where", m_where}, {"error", why}});
            m_down_since_error = why.empty() ? "cannot connect" : why;
            return unavailable(m_down_since_error);
        }
        log::info("store: reconnected to PostgreSQL", {{"where", m_where}});
        m_down_since_error.clear();
        return ok_status();
    }

    PGconn* m_conn;
    std::string m_where;  // the URL, password redacted, for logs
    int m_changes = 0;
    bool m_in_transaction = false;
    bool m_transaction_lost = false;  // the connection broke inside the open transaction
    std::string m_down_since_error;   // why the last reconnect failed ("" while connected)
    std::chrono::steady_clock::time_point m_last_attempt{};
};

Result<bool> PgStatement::step() {
    if (!m_result) {
        std::vector<const char*> values(m_values.size());
        for (size_t i = 0; i < m_values.size(); ++i) values[i] = m_bound[i] ? m_values[i].c_str() : nullptr;
        static const char* const kNone[] = {nullptr};
        m_result = TRY(m_connection.run(m_text.sql, m_text.parameters, m_types.data(), values.empty() ? kNone : values.data()));
        m_row = 0;
    } else if (m_row < PQntuples(m_result)) {
        ++m_row;
    }
    return m_row < PQntuples(m_result);
}

}  // namespace

std::string one_line(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    for (auto& c : text)
        if (c == '\n' || c == '\t') c = ' ';
    return text;
}

PGconn* pg_connect(const std::string& url) {
    // The URL's own settings win over these defaults (they come after them).
    const char* keys[] = {"connect_timeout", "application_name", "keepalives_idle", "keepalives_interval",
                          "keepalives_count", "tcp_user_timeout", "dbname", nullptr};
    const char* values[] = {"5", "kilnd", "10", "5", "3", "30000", url.c_str(), nullptr};
    PGconn* conn = PQconnectdbParams(keys, values, 1);
    if (conn) PQsetNoticeProcessor(conn, ignore_notice, nullptr);
    return conn;
}

Result<std::unique_ptr<Connection>> open_postgres(const std::string& url) {
    // A statement in flight on a connection to a vanished server then fails (StoreUnavailable)
    // instead of holding the connection (see pg_connect).
    PGconn* conn = pg_connect(url);
    if (!conn) return make_error(ErrorCode::StoreFailed, "postgresql: out of memory");
    std::string where = redact_store_spec(url);
    if (PQstatus(conn) != CONNECTION_OK) {
        std::string why = one_line(PQerrorMessage(conn));
        PQfinish(conn);
        return make_error(ErrorCode::StoreUnavailable, "the store is unavailable: cannot connect to " + where + ": " + why);
    }
    return std::unique_ptr<Connection>(new PgConnection(conn, where));
}

}  // namespace kiln::db_detail
