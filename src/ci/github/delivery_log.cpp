// DeliveryLog: table github_deliveries in kilnd's store (see delivery_log.h).
#include "ci/github/delivery_log.h"

#include "base/clock.h"
#include "base/db_table.h"

namespace kiln::ci::github {
namespace {

struct DeliveryRow {
    std::string delivery_id;
    std::string event;
    int64_t received_at_ms = 0;
    std::string job_id;
    std::string body_sha256;  // "" in rows from before migration 7
};

const DbTable<DeliveryRow>& deliveries() {
    using D = DeliveryRow;
    static const DbTable<D> table("github_deliveries",
                                      {column<D>("delivery_id", &D::delivery_id), column<D>("event", &D::event),
                                       column<D>("received_at_ms", &D::received_at_ms), column<D>("job_id", &D::job_id),
                                       column<D>("body_sha256", &D::body_sha256)});
    return table;
}

}  // namespace

const Migrations& delivery_migrations() {
    // 4: the table existed before it had a migration (each DeliveryLog made it when missing), so
    // a kilnd.db of that time already has it: IF NOT EXISTS keeps its rows.
    static const Migrations list = {
        {4, R"sql(
CREATE TABLE IF NOT EXISTS github_deliveries (
  delivery_id TEXT PRIMARY KEY,
  event TEXT NOT NULL,
  received_at_ms INTEGER NOT NULL,
  job_id TEXT NOT NULL DEFAULT ''
);
)sql"},
        // 7: the body's SHA-256, unique: the signature covers the body but not X-GitHub-Delivery,
        // so a captured delivery replayed under a new id must still be a duplicate. Older rows
        // keep '' (outside the index).
        {7, R"sql(
ALTER TABLE github_deliveries ADD COLUMN body_sha256 TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX github_deliveries_body ON github_deliveries (body_sha256) WHERE body_sha256 <> '';
)sql"},
    };
    return list;
}

Result<std::unique_ptr<DeliveryLog>> DeliveryLog::open(std::shared_ptr<Db> db) {
    {
        auto s = db->session();
        // GitHub redelivers for days, not months: ids older than 90 days cannot come back.
        auto prune = TRY(s.prepare("DELETE FROM github_deliveries WHERE received_at_ms < ?"));
        TRY(prune.bind(1, now_unix_ms() - int64_t(90) * 86400 * 1000).run());
    }
    return std::unique_ptr<DeliveryLog>(new DeliveryLog(std::move(db)));
}

Result<DeliveryClaim> DeliveryLog::claim(const std::string& delivery_id, const std::string& event,
                                         const std::string& body_sha256, int64_t now_ms) {
    auto db = m_db->session();
    auto insert = TRY(db.prepare(deliveries().insert() + " ON CONFLICT DO NOTHING"));
    deliveries().bind(insert, DeliveryRow{delivery_id, event, now_ms, "", body_sha256});
    TRY(insert.run());
    DeliveryClaim claim;
    if (db.changes() == 1) {
        claim.first = true;
        return claim;
    }
    // Seen before under this id, or this body under another: the row that holds either.
    auto select = TRY(db.prepare(deliveries().select() + " WHERE delivery_id = ? OR (body_sha256 = ? AND body_sha256 <> '')"));
    select.bind(1, delivery_id).bind(2, body_sha256);
    if (TRY(select.step())) {
        DeliveryRow row = TRY(deliveries().read(select));
        claim.job_id = row.job_id;
        claim.first_delivery = row.delivery_id;
    }
    return claim;
}

Status DeliveryLog::set_job(const std::string& delivery_id, const std::string& job_id) {
    auto db = m_db->session();
    auto update = TRY(db.prepare("UPDATE github_deliveries SET job_id = ? WHERE delivery_id = ?"));
    return update.bind(1, job_id).bind(2, delivery_id).run();
}

Status DeliveryLog::release(const std::string& delivery_id) {
    auto db = m_db->session();
    auto del = TRY(db.prepare("DELETE FROM github_deliveries WHERE delivery_id = ?"));
    return del.bind(1, delivery_id).run();
}

}  // namespace kiln::ci::github
