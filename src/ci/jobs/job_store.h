// JobStore: the CI queue's rows in kilnd.db (tables ci_jobs and ci_bake_cache, migration 2 of
// job_migrations()), on the connection kilnd shares between its stores. Secrets are never written here.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/db.h"
#include "base/db_migrations.h"
#include "ci/jobs/job_service.h"

namespace kiln::ci {

// The PostgreSQL channel every host's workers LISTEN on (PgListener): the store NOTIFYs it in the
// transaction that queues a job (a submit, a pipeline's move on, a retry, a lost host's job), so a
// job queued through any host wakes the workers of all. SQLite: no channel (one host).
inline constexpr const char* kQueueChannel = "kiln_ci_queue";

// CI's part of kilnd.db's schema (version 2; versions are global across the file, see
// daemon/store/migrations.h). kilnd runs it with the other modules' (src/kilnd/kilnd_db.cpp).
const Migrations& job_migrations();

// A CI bake: the snapshot a template key was baked into, on the host that baked it. Each host
// bakes a key for itself on first use (a snapshot's files are on the host that took it), so a key
// has a row per host that baked it.
struct BakeEntry {
    std::string key;
    std::string template_name;
    std::string snapshot_id;
    std::string host;
};

// A job whose run was interrupted: by a restart of its own kilnd (JobStore::recover_interrupted)
// or by the loss of its host, whose lease expired (JobStore::requeue_expired).
struct InterruptedJob {
    JobInfo job;          // its record as now stored
    int attempt = 0;      // the claim (JobInfo::attempts) that was interrupted
    bool requeued = false;  // queued again; false: ended as error (it was interrupted before)
    std::string lost_host;  // requeue_expired: the host whose lease expired; "" for a restart
};

// A lease renewed (JobStore::renew_lease): whether this host still holds it, and whether a cancel
// of the job (or its pipeline) was asked on any host.
struct LeaseRenewal {
    bool held = false;
    bool cancel_requested = false;
};

// What a change of a pipeline (JobStore::change_pipeline) changed: jobs by index in
// PipelineInfo::jobs, each written only if its state is still the one read; `cancel_running`:
// running jobs whose host is asked to cancel them (through its lease renewal).
struct PipelineChange {
    std::vector<size_t> changed_jobs;
    std::vector<size_t> cancel_running;
    bool pipeline_changed = false;
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

    // Pipelines (ci_pipelines, migration 9). A new pipeline and its first job, in one transaction;
    // returns the job stored. A pipeline whose spec has a submit_key that an earlier one has is not
    // inserted: that one's first job is returned (of several hosts submitting it, one inserts).
    Result<JobInfo> insert_pipeline(const PipelineInfo& pipeline, const JobInfo& first);
    // A pipeline planned by the worker running its first job `rows[first_id]`: the pipeline's row
    // (running, its sha) and its jobs' (`first_id`'s updated under its lease, the others
    // inserted), with the pipeline's row locked. When the pipeline's cancel was asked meanwhile
    // (on any host), the other rows are stored cancelled (and changed in `rows` too). False: the
    // first job's lease is lost (nothing written). `saved` gets the pipeline's row as stored.
    Result<bool> save_plan(const std::string& pipeline_id, const std::string& sha, std::vector<JobInfo>& rows,
                           const std::string& first_id, int64_t now_ms, PipelineInfo* saved);
    // The pipeline's row and the rows of the jobs advance_pipeline changed, in one transaction
    // (unconditional: for tests and single-writer paths; the queue uses change_pipeline).
    Status save_progress(const PipelineInfo& pipeline, const std::vector<size_t>& changed_jobs);
    // Reads the pipeline and its jobs with its row locked (FOR UPDATE on PostgreSQL; SQLite's
    // write transaction), lets `change` move it on, and writes what it says changed, in one
    // transaction: two hosts that end jobs of one pipeline at once move it on one after the other,
    // each from what the other wrote. A job is written only if its state is still the one read
    // (a queued job a host claimed meanwhile is asked to cancel instead, when that was the
    // change). Empty when there is no such pipeline; else the pipeline as stored and, in
    // `applied`, what was written.
    Result<std::optional<PipelineInfo>> change_pipeline(const std::string& id,
                                                        const std::function<PipelineChange(PipelineInfo&)>& change,
                                                        PipelineChange* applied);
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
    // The oldest queued job, marked running (attempts + 1, started_at) and leased to `host` until
    // now + lease_ms (0: a lease that never expires, for tests) in the same transaction. On
    // PostgreSQL the row is chosen with FOR UPDATE SKIP LOCKED: hosts claiming at once take
    // different jobs without waiting for each other; SQLite's write transaction serializes them.
    Result<std::optional<JobInfo>> claim_next(int64_t now_ms, const std::string& host = "", int64_t lease_ms = 0);
    // Moves the lease of `job`'s claim (its host and attempts) to now + lease_ms. Not held: the
    // job was re-queued (its lease had expired) or ended by another host; the caller stops it
    // and writes nothing more to it.
    Result<LeaseRenewal> renew_lease(const JobInfo& job, int64_t now_ms, int64_t lease_ms);
    // Writes the job's row only while `job`'s claim still holds the lease (state running,
    // lease_host and attempts as in `job`): false, writing nothing, when it does not. Every write
    // of a running host goes through here, so a host that lost a job can never overwrite the
    // record of the attempt that replaced it.
    Result<bool> update_leased(const JobInfo& job);
    // Jobs running under a lease that expired before `now_ms` (their host died or lost the
    // database): each counts one more interruption; with at most `max_restarts` it is queued again
    // as the next attempt (attempt_reason names the lost host), beyond that it ends as error.
    // Safe from every host at once: each job is taken by one of them.
    Result<std::vector<InterruptedJob>> requeue_expired(int64_t now_ms, int max_restarts);
    // After a crash, before any worker starts: every job still marked running under `host`'s
    // lease (or under none: a record from before leases) was interrupted. Each counts one more
    // restart; with at most `max_restarts` it is queued again (its record of the interrupted
    // attempt cleared), beyond that it ends as error saying why. Other hosts' jobs are theirs.
    Result<std::vector<InterruptedJob>> recover_interrupted(int64_t now_ms, int max_restarts, const std::string& host = "");
    // One round trip to the store (SELECT 1): whether it answers.
    Status ping();
    // A cancel of a job on any host: queued or waiting, it is ended now (cancelled, `why`) and
    // returned; running, its host is asked to (cancel_requested, seen at its next lease renewal)
    // and nothing is returned; ended, nothing changes.
    Result<std::optional<JobInfo>> cancel_job(const std::string& id, const std::string& why, int64_t now_ms);

    // Every job's id, repository and whether (and when) it finished: for the retention pruner.
    Result<std::vector<JobAge>> job_ages();
    // Deletes the rows of jobs that finished before `before_ms`, and the pipelines left without a
    // job; returns the jobs' ids.
    Result<std::vector<std::string>> delete_finished_before(int64_t before_ms);

    // Bakes are per host (BakeEntry): a host finds, drops and evicts only its own.
    // A bake found is marked used now (used_at_ms), which keeps it from eviction for a while.
    Result<std::optional<BakeEntry>> find_bake(const std::string& host, const std::string& key, int64_t now_ms);
    Status put_bake(const BakeEntry& entry, int64_t now_ms);  // entry.host's row for entry.key
    Status drop_bake(const std::string& host, const std::string& key);
    // The host's bakes beyond its `keep` most recently used, among those last used before
    // `used_before_ms` (a bake just found may be on its way to a create): least recently used first.
    Result<std::vector<BakeEntry>> bakes_to_evict(const std::string& host, int keep, int64_t used_before_ms);
    // Deletes the bake's row only if it was still last used before `used_before_ms` and still names
    // `snapshot_id`: false when a job found it (or a rebake replaced it) since it was chosen.
    Result<bool> evict_bake(const BakeEntry& entry, int64_t used_before_ms);
    // Bakes from before hosts (migration 12 gave them host ""): their snapshots are on the one host
    // kilnd ran on then, which is the first to start after the upgrade (as HostStore::claim_unowned
    // gives it the old sandboxes and snapshots). Returns how many it took.
    Result<int> claim_unowned_bakes(const std::string& host);
    // Every host's bake rows, most recently used first, each with its hit and miss counts over the
    // jobs kept that this host ran (jobs from before hosts, with no host, count for every host).
    Result<std::vector<BakeInfo>> list_bakes(int limit);
    // The snapshot ids the bake rows of every host name.
    Result<std::vector<std::string>> baked_snapshot_ids();

private:
    explicit JobStore(std::shared_ptr<Db> db);
    std::shared_ptr<Db> m_db;  // shared: its Session serializes every thread's use
};

}  // namespace kiln::ci
