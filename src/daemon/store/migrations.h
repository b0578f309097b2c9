// The daemon's part of kilnd.db's schema: tokens, sandboxes and snapshots, as numbered migrations
// (base/db_migrations.h). Versions are global across kilnd.db's modules: the daemon has 1 and
// 3 and 5; CI's jobs have 2 and 8 (ci/jobs/job_store.h), GitHub's deliveries 4 and 7 (ci/github/delivery_log.h).
// kilnd runs them all in one list (src/kilnd/kilnd_db.cpp).
#pragma once

#include "base/db_migrations.h"

namespace kiln::daemon {

const Migrations& migrations();

}  // namespace kiln::daemon
