// plan_rows and advance_pipeline (see pipeline_schedule.h).
#include "ci/jobs/pipeline_schedule.h"

#include <map>

#include "ci/jobs/job_state.h"

namespace kiln::ci {

std::vector<JobInfo> plan_rows(const JobInfo& first, const std::vector<PlannedJob>& plan,
                               const std::function<std::string()>& new_id) {
    size_t first_index = plan.size();
    for (size_t i = 0; i < plan.size() && first_index == plan.size(); ++i)
        if (plan[i].needs.empty()) first_index = i;
    std::map<std::string, std::string> ids;  // planned name -> job id
    for (size_t i = 0; i < plan.size(); ++i) ids[plan[i].name] = i == first_index ? first.id : new_id();
    std::vector<JobInfo> rows;
    for (size_t i = 0; i < plan.size(); ++i) {
        JobInfo row;
        if (i == first_index) {
            row = first;
        } else {
            row.id = ids[plan[i].name];
            row.spec = first.spec;
            row.sha = first.sha;
            row.pipeline_id = first.pipeline_id;
            row.created_at_ms = first.created_at_ms;  // the pipeline's: its jobs keep its place in the queue
            row.state = plan[i].needs.empty() ? JobState::Queued : JobState::Waiting;
        }
        row.plan_index = static_cast<int>(i);
        row.name = plan[i].name;
        row.needs.clear();
        for (const auto& need : plan[i].needs)
            if (auto it = ids.find(need); it != ids.end()) row.needs.push_back(it->second);
        rows.push_back(std::move(row));
    }
    return rows;
}

namespace {

PipelineState final_state(const PipelineInfo& p) {
    if (p.cancel_requested) return PipelineState::Cancelled;
    // A skip follows from a need that did not pass, so that need decides; a skip alone (its need's
    // row gone) still fails the pipeline.
    bool failed = false, error = false, cancelled = false, skipped = false;
    for (const auto& j : p.jobs) {
        failed = failed || j.state == JobState::Failed;
        error = error || j.state == JobState::Error;
        cancelled = cancelled || j.state == JobState::Cancelled;
        skipped = skipped || j.state == JobState::Skipped;
    }
    if (failed) return PipelineState::Failed;
    if (error) return PipelineState::Error;
    if (cancelled) return PipelineState::Cancelled;
    return skipped ? PipelineState::Failed : PipelineState::Passed;
}

// "test (18) failed; e2e skipped": the jobs that did not pass, in plan order, bounded. A pipeline
// of one job that did not pass says that job's error.
std::string summary(const PipelineInfo& p) {
    if (p.jobs.size() == 1 && p.jobs[0].state != JobState::Passed) return p.jobs[0].error;
    std::string out;
    size_t listed = 0, more = 0;
    for (const auto& j : p.jobs) {
        if (j.state == JobState::Passed) continue;
        if (listed++ >= 10) {
            ++more;
            continue;
        }
        out += (out.empty() ? "" : "; ") + (j.name.empty() ? j.id : j.name) + " " + job_state_name(j.state);
    }
    if (more) out += "; and " + std::to_string(more) + " more";
    return out;
}

}  // namespace

PipelineAdvance advance_pipeline(PipelineInfo& p, int64_t now_ms) {
    PipelineAdvance out;
    std::map<std::string, size_t> by_id;
    for (size_t i = 0; i < p.jobs.size(); ++i) by_id[p.jobs[i].id] = i;
    // Until nothing moves: a skip can unblock (as a skip) the jobs that need the skipped one.
    for (bool moved = true; moved;) {
        moved = false;
        for (size_t i = 0; i < p.jobs.size(); ++i) {
            JobInfo& j = p.jobs[i];
            if (j.state != JobState::Waiting) continue;
            bool all_ended = true;
            std::string not_passed;
            for (const auto& need : j.needs) {
                auto it = by_id.find(need);
                if (it == by_id.end()) continue;  // a row retention removed: nothing to wait for
                const JobInfo& n = p.jobs[it->second];
                if (!is_final(n.state)) all_ended = false;
                else if (n.state != JobState::Passed)
                    not_passed += (not_passed.empty() ? "" : ", ") + n.name + " (" + job_state_name(n.state) + ")";
            }
            if (!all_ended && not_passed.empty()) continue;
            if (!not_passed.empty()) {
                // Skipped at once, even while other needs still run: it can no longer run.
                j.state = JobState::Skipped;
                j.error = "skipped: it needs " + not_passed + ", which did not pass";
                j.finished_at_ms = now_ms;
            } else {
                j.state = JobState::Queued;
            }
            out.changed_jobs.push_back(i);
            moved = true;
        }
    }
    bool all_final = !p.jobs.empty();
    for (const auto& j : p.jobs) all_final = all_final && is_final(j.state);
    if (all_final && !is_final(p.state)) {
        p.state = final_state(p);
        p.error = p.state == PipelineState::Passed ? "" : summary(p);
        if (p.state == PipelineState::Cancelled && p.error.empty()) p.error = "cancelled";
        p.finished_at_ms = now_ms;
        out.pipeline_changed = true;
    }
    return out;
}

}  // namespace kiln::ci
