// kilnd.db: one file, one connection per kilnd process, shared by the daemon's store, CI's job
// store and GitHub's delivery log (each module declares its own tables and migrations; this is
// the one place that knows them all and puts them in one order).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/db.h"
#include "base/db_migrations.h"

namespace kiln::daemon {

// Every module's migrations of kilnd.db, for run_migrations (their versions are global: 1 and 3
// the daemon's, 2 CI's jobs, 4 GitHub's deliveries, 10 the dashboard's sessions).
std::vector<Migrations> kilnd_migrations();

// Opens (creating) `path` and brings its schema up to date: every module's migrations that the
// file does not record yet, in version order. A file from a newer kilnd is refused.
Result<std::shared_ptr<Db>> open_kilnd_db(const std::string& path);

}  // namespace kiln::daemon
