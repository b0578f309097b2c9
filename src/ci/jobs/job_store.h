// JobStore: the CI queue's rows in kilnd.db (tables ci_jobs and ci_bake_cache, migration 2 of
// job_migrations()), on the connection kilnd shares between its stores. Secrets are never written here.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/db.h"
#include "base/db_migrations.h"
#include "ci/jobs/job_service.h"

namespace kiln::ci {

// CI's part of kilnd.db's schema (version 2; versions are global across the file, see
// daemon/store/migrations.h). kilnd runs it with the other modules' (src/kilnd/kilnd_db.cpp).
const Migrations& job_migrations();

struct BakeEntry {
    std::string key;
    std::string template_name;
    std::string snapshot_id;
};

// A job a kilnd restart interrupted (JobStore::recover_interrupted).
struct InterruptedJob {
    JobInfo job;          // its record as now stored
    int attempt = 0;      // the attempt that was interrupted
    bool requeued = false;  // queued again; false: ended as error (it was interrupted before)
};

// What the retention pruner needs of every job's row.
struct JobAge {
    std::string id;
    std::string repo;
    bool finished = false;
    int64_t finished_at_ms = 0;
};

// Thread-safe.
class JobStore {
public:
    // `db` must have job_migrations() run (fails clearly if its tables are missing).
    static Result<std::unique_ptr<JobStore>> open(std::shared_ptr<Db> db);
    ~JobStore();

    Status insert(const JobInfo& job);
    Status update(const JobInfo& job);  // every column, by id

    // Pipelines (ci_pipelines, migration 9). A new pipeline and its first job, in one transaction.
    Status insert_pipeline(const PipelineInfo& pipeline, const JobInfo& first);
    // A pipeline planned: its row, and its jobs' (`first_id`'s updated, the others inserted).
    Status save_plan(const PipelineInfo& pipeline, const std::vector<JobInfo>& rows, const std::string& first_id);
    // The pipeline's row and the rows of the jobs advance_pipeline changed, in one transaction.
    Status save_progress(const PipelineInfo& pipeline, const std::vector<size_t>& changed_jobs);
    // With its jobs, in plan order.
    Result<std::optional<PipelineInfo>> get_pipeline(const std::string& id);
    // Newest first, with their jobs; owner 0 means every owner.
    Result<std::vector<PipelineInfo>> list_pipelines(int limit, int64_t owner_token_id = 0);
    // Queued or running pipelines, oldest first.
    Result<std::vector<std::string>> unfinished_pipelines();
    Result<std::optional<JobInfo>> get(const std::string& id);
    // Newest first; owner 0 means every owner.
    Result<std::vector<JobInfo>> list(int limit, int64_t owner_token_id = 0);
    // One page of each list (job_service.h ListPage); limit clamped to 1..1001 (a route asks for
    // one more than it shows, to know whether there is a next page).
    Result<std::vector<JobInfo>> list_page(const ListPage& page);
    Result<std::vector<PipelineInfo>> list_pipelines_page(const ListPage& page);
    Result<int64_t> count_unfinished(int64_t owner_token_id);  // queued, waiting or running
    // The oldest queued job, marked running (attempts + 1, started_at) in the same transaction.
    Result<std::optional<JobInfo>> claim_next(int64_t now_ms);
    // After a crash, before any worker starts: every job still marked running was interrupted.
    // Each counts one more restart; with at most `max_restarts` it is queued again (its record of
    // the interrupted attempt cleared), beyond that it ends as error saying why.
    Result<std::vector<InterruptedJob>> recover_interrupted(int64_t now_ms, int max_restarts);

    // Every job's id, repository and whether (and when) it finished: for the retention pruner.
    Result<std::vector<JobAge>> job_ages();
    // Deletes the rows of jobs that finished before `before_ms`, and the pipelines left without a
    // job; returns the jobs' ids.
    Result<std::vector<std::string>> delete_finished_before(int64_t before_ms);

    // A bake found is marked used now (used_at_ms), which keeps it from eviction for a while.
    Result<std::optional<BakeEntry>> find_bake(const std::string& key, int64_t now_ms);
    Status put_bake(const BakeEntry& entry, int64_t now_ms);
    Status drop_bake(const std::string& key);
    // The bakes beyond the `keep` most recently used, among those last used before `used_before_ms`
    // (a bake just found may be on its way to a create): least recently used first.
    Result<std::vector<BakeEntry>> bakes_to_evict(int keep, int64_t used_before_ms);
    // Deletes the bake's row only if it was still last used before `used_before_ms` and still names
    // `snapshot_id`: false when a job found it (or a rebake replaced it) since it was chosen.
    Result<bool> evict_bake(const BakeEntry& entry, int64_t used_before_ms);
    // The bake rows, most recently used first, each with its hit and miss counts over the jobs kept.
    Result<std::vector<BakeInfo>> list_bakes(int limit);
    // The snapshot ids the bake rows name.
    Result<std::vector<std::string>> baked_snapshot_ids();

private:
    explicit JobStore(std::shared_ptr<Db> db);
    std::shared_ptr<Db> m_db;  // shared: its Session serializes every thread's use
};

}  // namespace kiln::ci
