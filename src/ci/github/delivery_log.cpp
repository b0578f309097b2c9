// DeliveryLog over SQLite: table github_deliveries in kilnd.db (see delivery_log.h).
#include "ci/github/delivery_log.h"

#include <chrono>

#include "base/sqlite_db.h"

namespace kiln::ci::github {

// A table of its own (not a store migration): it belongs to this integration only, and
// CREATE TABLE IF NOT EXISTS keeps it independent of the store's schema version.
static constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS github_deliveries (
  delivery_id TEXT PRIMARY KEY,
  event TEXT NOT NULL,
  received_at_ms INTEGER NOT NULL,
  job_id TEXT NOT NULL DEFAULT ''
);
)sql";

DeliveryLog::DeliveryLog(std::unique_ptr<SqliteDb> db) : m_db(std::move(db)) {}
DeliveryLog::~DeliveryLog() {
    if (m_db) m_db->close();
}

Result<std::unique_ptr<DeliveryLog>> DeliveryLog::open(const std::string& db_path) {
    auto db = TRY(SqliteDb::open(db_path));
    TRY(db->exec(kSchema));
    // GitHub redelivers for days, not months: ids older than 90 days cannot come back.
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
    auto prune = TRY(db->prepare("DELETE FROM github_deliveries WHERE received_at_ms < ?"));
    TRY(prune.bind(1, now - int64_t(90) * 86400 * 1000).run());
    return std::unique_ptr<DeliveryLog>(new DeliveryLog(std::move(db)));
}

Result<DeliveryClaim> DeliveryLog::claim(const std::string& delivery_id, const std::string& event, int64_t now_ms) {
    std::lock_guard lock(m_mutex);
    auto insert = TRY(m_db->prepare(
        "INSERT OR IGNORE INTO github_deliveries (delivery_id, event, received_at_ms) VALUES (?, ?, ?)"));
    TRY(insert.bind(1, delivery_id).bind(2, event).bind(3, now_ms).run());
    DeliveryClaim claim;
    if (m_db->changes() == 1) {
        claim.first = true;
        return claim;
    }
    auto select = TRY(m_db->prepare("SELECT job_id FROM github_deliveries WHERE delivery_id = ?"));
    select.bind(1, delivery_id);
    if (TRY(select.step())) claim.job_id = select.column_text(0);
    return claim;
}

Status DeliveryLog::set_job(const std::string& delivery_id, const std::string& job_id) {
    std::lock_guard lock(m_mutex);
    auto update = TRY(m_db->prepare("UPDATE github_deliveries SET job_id = ? WHERE delivery_id = ?"));
    return update.bind(1, job_id).bind(2, delivery_id).run();
}

Status DeliveryLog::release(const std::string& delivery_id) {
    std::lock_guard lock(m_mutex);
    auto del = TRY(m_db->prepare("DELETE FROM github_deliveries WHERE delivery_id = ?"));
    return del.bind(1, delivery_id).run();
}

}  // namespace kiln::ci::github
