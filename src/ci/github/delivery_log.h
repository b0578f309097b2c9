// DeliveryLog: the X-GitHub-Delivery ids kilnd has acted on, in a table of its own in kilnd.db, so a
// redelivered (or replayed) webhook makes no second job, also across restarts.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "base/result.h"

namespace kiln {
class SqliteDb;
}

namespace kiln::ci::github {

struct DeliveryClaim {
    bool first = false;  // true: this call recorded the id; false: seen before
    std::string job_id;  // seen before: the job it made ("" if that one made none or is in flight)
};

// Thread-safe.
class DeliveryLog {
public:
    // Opens `db_path` (kilnd.db: its own connection, WAL) and creates the table if missing.
    static Result<std::unique_ptr<DeliveryLog>> open(const std::string& db_path);
    ~DeliveryLog();

    // Records the id atomically (INSERT OR IGNORE): of two concurrent deliveries one is first.
    Result<DeliveryClaim> claim(const std::string& delivery_id, const std::string& event, int64_t now_ms);
    Status set_job(const std::string& delivery_id, const std::string& job_id);
    // Forgets the id: the job could not be submitted, so GitHub's redelivery should try again.
    Status release(const std::string& delivery_id);

private:
    explicit DeliveryLog(std::unique_ptr<SqliteDb> db);
    std::mutex m_mutex;
    std::unique_ptr<SqliteDb> m_db;
};

}  // namespace kiln::ci::github
