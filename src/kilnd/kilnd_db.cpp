// kilnd.db's modules, put together (see kilnd_db.h).
#include "kilnd/kilnd_db.h"

#include "ci/github/delivery_log.h"
#include "ci/jobs/job_store.h"
#include "daemon/auth/session_store.h"
#include "daemon/store/migrations.h"

namespace kiln::daemon {

std::vector<Migrations> kilnd_migrations() {
    return {migrations(), ci::job_migrations(), ci::github::delivery_migrations(), session_migrations()};
}

Result<std::shared_ptr<Db>> open_kilnd_db(const std::string& spec) {
    auto db = TRY(Db::open(spec));
    TRY(run_migrations(*db, kilnd_migrations()));
    return db;
}

}  // namespace kiln::daemon
