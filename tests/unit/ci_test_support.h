// What the CI unit tests share: a shell step for setting up git fixtures, and a JobStore over a
// fresh store (a SQLite file in a test folder or a PostgreSQL database) with CI's migrations (as kilnd runs them).
#pragma once

#include <memory>
#include <string>

#include "base/child_process.h"
#include "base/db.h"
#include "base/db_migrations.h"
#include "ci/jobs/job_store.h"

namespace kiln::ci::fixtures {

// Runs `script` under sh -e; its output is the error when it fails.
inline Status sh(const std::string& script) {
    auto run = run_and_capture({"sh", "-e", "-c", script}, Millis(60000));
    if (!run.ok()) return run.error();
    if (!run->status.success()) return make_error(ErrorCode::Internal, "sh: " + run->output);
    return ok_status();
}

// A JobStore over the store `spec` names (a SQLite file, or a PostgreSQL URL: see
// pg_test_server.h), created with CI's migrations.
inline Result<std::unique_ptr<JobStore>> open_job_store(const std::string& spec) {
    auto db = TRY(Db::open(spec));
    TRY(run_migrations(*db, {job_migrations()}));
    return JobStore::open(db);
}

}  // namespace kiln::ci::fixtures
