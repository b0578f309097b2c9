// JobRunner: a job's attempt, as the phases of a JobAttempt, and the bakes' eviction (see
// job_runner.h and docs/ci.md).
#include "ci/jobs/job_runner.h"

#include <algorithm>
#include <mutex>
#include <set>

#include "base/clock.h"
#include "base/json_log.h"
#include "ci/jobs/canonical_repo.h"
#include "ci/jobs/job_attempt.h"
#include "ci/jobs/job_store.h"

namespace kiln::ci {

JobRunner::JobRunner(RunnerConfig config, daemon::SandboxService& service, JobStore& store, GitCache& git)
    : m_config(std::move(config)), m_service(service), m_store(store), m_git(git) {}

// Whether this host holds the snapshot's files. A snapshot with no hosts listed is from a store
// without them (a unit test's service, or before migration 11 was claimed): this host's.
bool JobRunner::held_here(const daemon::SnapshotInfo& snap) const {
    return snap.hosts.empty() || std::find(snap.hosts.begin(), snap.hosts.end(), m_config.host) != snap.hosts.end();
}

void JobRunner::collect_bakes() {
    std::lock_guard lock(m_eviction);
    const int64_t now = now_unix_ms();
    const int64_t cutoff = now - m_config.bake_min_idle_ms;
    auto doomed = m_store.bakes_to_evict(m_config.host, m_config.bakes_kept, cutoff);
    if (!doomed.ok()) {
        log::warn("ci: listing bakes to evict failed", {{"error", doomed.error().to_string()}});
        return;
    }
    auto remove = [&](const std::string& snapshot_id, const char* why) {
        auto removed = m_service.remove_snapshot(m_config.caller, snapshot_id);
        if (!removed.ok() && removed.error().code != ErrorCode::NotFound)
            log::warn("ci: deleting a bake's snapshot failed", {{"snapshot", snapshot_id}, {"error", removed.error().to_string()}});
        else
            log::info(why, {{"snapshot", snapshot_id}});
    };
    for (const BakeEntry& bake : *doomed) {
        // The row goes only if no job found it since it was chosen: a job that did is on its way
        // to a create from this snapshot.
        auto evicted = m_store.evict_bake(bake, cutoff);
        if (!evicted.ok()) log::warn("ci: evicting a bake failed", {{"key", bake.key}, {"error", evicted.error().to_string()}});
        if (evicted.ok() && *evicted) remove(bake.snapshot_id, "ci: bake evicted (least recently used)");
    }
    // Bake snapshots no row names: kilnd stopped between a row's deletion and its snapshot's, or
    // two jobs baked one key at once (the second row replaced the first). Only old ones: a bake
    // just snapshotted gets its row a moment later. Only this host's: another host's bake
    // snapshots are its to keep or delete (their files are there).
    auto named = m_store.baked_snapshot_ids();
    auto owned = m_service.list_snapshots(m_config.caller);
    if (!named.ok() || !owned.ok()) return;
    std::set<std::string> live(named->begin(), named->end());
    for (const auto& snap : *owned)
        if (snap.name.rfind(kBakeSnapshotPrefix, 0) == 0 && !live.count(snap.id) && snap.created_at_ms < now - kUnnamedBakeGraceMs &&
            held_here(snap))
            remove(snap.id, "ci: bake snapshot no bake names, deleted");
}

std::string bake_snapshot_prefix(const std::string& repository) {
    return std::string(kBakeSnapshotPrefix) + repo_tag(repository) + "-";
}

std::string JobRunner::artifact_path(const std::string& job_id, size_t index) const {
    return m_config.jobs_dir + "/" + job_id + "/artifacts/" + std::to_string(index);
}

std::string JobRunner::log_path(const std::string& job_id) const {
    return m_config.jobs_dir + "/" + job_id + "/log.ndjson";
}

RunOutcome JobRunner::run(const JobInfo& job, const std::map<std::string, std::string>& spec_secrets, JobLog& log,
                          JobControl& control, const std::function<void(const RunOutcome&)>& progress,
                          const LoadedPipeline* source) {
    JobAttempt attempt(*this, job, spec_secrets, log, control, progress, source);
    // The phases in the order they run; one that ends the attempt (an error, a failed bake, a
    // cancel, the cap) has set its outcome, and the rest are skipped.
    if (attempt.prepare_source()) {
        attempt.choose_secrets();
        if (attempt.choose_template() && attempt.gather_needs() && attempt.run_vms()) attempt.conclude();
    }
    // Whatever happened above, every VM goes (the attempt's destructor does it too if a phase threw).
    // The outcome is taken after it, so the log's vm_removed comes before the worker's end event.
    attempt.tear_down();
    return attempt.take_outcome();
}

}  // namespace kiln::ci
