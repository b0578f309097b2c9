// kilnd's store (kilnd.db, or the fleet's PostgreSQL: config key `store`): one connection per
// kilnd process, shared by the daemon's store, CI's job store and GitHub's delivery log (each module declares its own tables and migrations; this is
// the one place that knows them all and puts them in one order).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/db.h"
#include "base/db_migrations.h"

namespace kiln::daemon {

// Every module's migrations of kilnd's store, for run_migrations (their versions are global: 1, 3
// and 5 the daemon's, 2, 8, 9 and 13 CI's jobs, 4 and 7 GitHub's deliveries, 10 the dashboard's
// sessions).
std::vector<Migrations> kilnd_migrations();

// Opens the store `spec` names (Db::open: a SQLite file, created if missing, or a postgresql://
// URL) and brings its schema up to date: every module's migrations that it does not record yet,
// in version order. A store from a newer kilnd is refused.
Result<std::shared_ptr<Db>> open_kilnd_db(const std::string& spec);

}  // namespace kiln::daemon
