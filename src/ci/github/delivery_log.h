// DeliveryLog: the X-GitHub-Delivery ids kilnd has acted on and their bodies' SHA-256, in table
// github_deliveries of kilnd.db, so a redelivered webhook, or a captured one replayed under a new
// delivery id (the signature does not cover the id), makes no second job, also across restarts.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "base/db.h"
#include "base/db_migrations.h"

namespace kiln::ci::github {

// This integration's part of kilnd.db's schema (versions 4 and 7; versions are global across the file,
// see daemon/store/migrations.h). kilnd runs it with the other modules' (src/kilnd/kilnd_db.cpp).
const Migrations& delivery_migrations();

struct DeliveryClaim {
    bool first = false;  // true: this call recorded the id; false: seen before
    std::string job_id;  // seen before: the job it made ("" if that one made none or is in flight)
    std::string first_delivery;  // seen before: the delivery id it was first seen under
};

// Thread-safe.
class DeliveryLog {
public:
    // `db` must have delivery_migrations() run. Forgets ids older than 90 days.
    static Result<std::unique_ptr<DeliveryLog>> open(std::shared_ptr<Db> db);

    // Records the id and the body's hash atomically (INSERT .. ON CONFLICT DO NOTHING over two unique keys): of
    // two concurrent deliveries with the same id or the same body one is first.
    Result<DeliveryClaim> claim(const std::string& delivery_id, const std::string& event, const std::string& body_sha256,
                                int64_t now_ms);
    Status set_job(const std::string& delivery_id, const std::string& job_id);
    // Forgets the id: the job could not be submitted, so GitHub's redelivery should try again.
    Status release(const std::string& delivery_id);

private:
    explicit DeliveryLog(std::shared_ptr<Db> db) : m_db(std::move(db)) {}
    std::shared_ptr<Db> m_db;  // shared: its Session serializes every thread's use
};

}  // namespace kiln::ci::github
