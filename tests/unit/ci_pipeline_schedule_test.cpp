// The pipeline scheduler's pure parts (plan_rows, advance_pipeline) and the pipeline rows of the
// job store on a real SQLite file, migrated as kilnd does.
#include <gtest/gtest.h>

#include "ci/jobs/job_state.h"
#include "ci/jobs/job_store.h"
#include "ci/jobs/pipeline_schedule.h"
#include "ci_test_support.h"
#include "daemon_test_dir.h"
#include "pg_test_server.h"

namespace kiln::ci {
namespace {

JobInfo first_job() {
    JobInfo j;
    j.id = "job-000000000001";
    j.pipeline_id = "pipeline-000000000001";
    j.state = JobState::Running;
    j.attempts = 1;
    j.spec.repo = "/srv/r";
    j.sha = std::string(40, 'a');
    j.created_at_ms = 100;
    return j;
}

// lint, test (a), test (b), deploy needing lint and both tests.
std::vector<PlannedJob> four_jobs() {
    return {PlannedJob{"lint", 0, {}, {}},
            PlannedJob{"test (a)", 1, {{"v", "a"}}, {}},
            PlannedJob{"test (b)", 1, {{"v", "b"}}, {}},
            PlannedJob{"deploy", 2, {}, {"lint", "test (a)", "test (b)"}}};
}

std::vector<JobInfo> planned_rows(std::vector<PlannedJob> plan) {
    int n = 1;
    return plan_rows(first_job(), plan, [&n] { return "job-00000000010" + std::to_string(n++); });
}

PipelineInfo pipeline_of(std::vector<JobInfo> rows) {
    PipelineInfo p;
    p.id = "pipeline-000000000001";
    p.state = PipelineState::Running;
    p.jobs = std::move(rows);
    return p;
}

TEST(PipelineSchedule, PlanRowsNameEveryJobAndLinkNeedsById) {
    auto rows = planned_rows(four_jobs());
    ASSERT_EQ(rows.size(), 4u);
    EXPECT_EQ(rows[0].id, "job-000000000001") << "the submitted job takes the first job that needs nothing";
    EXPECT_EQ(rows[0].name, "lint");
    EXPECT_EQ(rows[0].state, JobState::Running);
    EXPECT_EQ(rows[0].attempts, 1);
    for (size_t i = 0; i < rows.size(); ++i) {
        EXPECT_EQ(rows[i].plan_index, int(i));
        EXPECT_EQ(rows[i].pipeline_id, "pipeline-000000000001");
        EXPECT_EQ(rows[i].sha, std::string(40, 'a'));
        EXPECT_EQ(rows[i].created_at_ms, 100) << "the pipeline's jobs keep its place in the queue";
    }
    EXPECT_EQ(rows[1].state, JobState::Queued);
    EXPECT_EQ(rows[2].state, JobState::Queued);
    EXPECT_EQ(rows[3].state, JobState::Waiting);
    EXPECT_EQ(rows[3].needs, (std::vector<std::string>{rows[0].id, rows[1].id, rows[2].id}));
}

TEST(PipelineSchedule, TheFirstJobIsTheFirstThatNeedsNothing) {
    std::vector<PlannedJob> plan = {PlannedJob{"deploy", 0, {}, {"build"}}, PlannedJob{"build", 1, {}, {}}};
    auto rows = planned_rows(plan);
    EXPECT_EQ(rows[1].id, "job-000000000001");
    EXPECT_EQ(rows[1].name, "build");
    EXPECT_EQ(rows[0].state, JobState::Waiting);
    EXPECT_EQ(rows[0].needs, std::vector<std::string>{"job-000000000001"});
}

TEST(PipelineSchedule, AWaitingJobIsQueuedWhenEveryNeedPassed) {
    PipelineInfo p = pipeline_of(planned_rows(four_jobs()));
    p.jobs[0].state = JobState::Passed;
    p.jobs[1].state = JobState::Passed;
    auto moved = advance_pipeline(p, 500);
    EXPECT_TRUE(moved.changed_jobs.empty()) << "test (b) still runs";
    EXPECT_FALSE(moved.pipeline_changed);
    p.jobs[2].state = JobState::Passed;
    moved = advance_pipeline(p, 600);
    EXPECT_EQ(moved.changed_jobs, std::vector<size_t>{3});
    EXPECT_EQ(p.jobs[3].state, JobState::Queued);
    EXPECT_FALSE(moved.pipeline_changed);
    p.jobs[3].state = JobState::Passed;
    moved = advance_pipeline(p, 700);
    EXPECT_TRUE(moved.pipeline_changed);
    EXPECT_EQ(p.state, PipelineState::Passed);
    EXPECT_EQ(p.finished_at_ms, 700);
    EXPECT_EQ(p.error, "");
}

TEST(PipelineSchedule, AFailedNeedSkipsItsDependentsAtOnceWithTheReason) {
    std::vector<PlannedJob> plan = four_jobs();
    plan.push_back(PlannedJob{"notify", 3, {}, {"deploy"}});
    PipelineInfo p = pipeline_of(planned_rows(plan));
    p.jobs[1].state = JobState::Failed;  // test (a); lint and test (b) still run
    auto moved = advance_pipeline(p, 500);
    EXPECT_EQ(moved.changed_jobs, (std::vector<size_t>{3, 4}));
    EXPECT_EQ(p.jobs[3].state, JobState::Skipped);
    EXPECT_EQ(p.jobs[3].error, "skipped: it needs test (a) (failed), which did not pass");
    EXPECT_EQ(p.jobs[3].finished_at_ms, 500);
    EXPECT_EQ(p.jobs[4].state, JobState::Skipped) << "a skip skips its own dependents";
    EXPECT_FALSE(moved.pipeline_changed) << "lint and test (b) have not ended";
    p.jobs[0].state = JobState::Passed;
    p.jobs[2].state = JobState::Passed;
    moved = advance_pipeline(p, 800);
    EXPECT_TRUE(moved.pipeline_changed);
    EXPECT_EQ(p.state, PipelineState::Failed);
    EXPECT_EQ(p.error, "test (a) failed; deploy skipped; notify skipped");
}

TEST(PipelineSchedule, FinalStates) {
    auto ended = [](std::vector<JobState> states, bool cancel_requested = false) {
        std::vector<JobInfo> rows;
        for (size_t i = 0; i < states.size(); ++i) {
            JobInfo j;
            j.id = "job-" + std::to_string(i);
            j.name = "j" + std::to_string(i);
            j.state = states[i];
            j.error = "why " + std::to_string(i);
            rows.push_back(j);
        }
        PipelineInfo p = pipeline_of(rows);
        p.cancel_requested = cancel_requested;
        advance_pipeline(p, 1);
        return p;
    };
    EXPECT_EQ(ended({JobState::Passed, JobState::Passed}).state, PipelineState::Passed);
    EXPECT_EQ(ended({JobState::Error, JobState::Failed}).state, PipelineState::Failed);
    EXPECT_EQ(ended({JobState::Error, JobState::Skipped}).state, PipelineState::Error);
    EXPECT_EQ(ended({JobState::Cancelled, JobState::Passed}).state, PipelineState::Cancelled);
    EXPECT_EQ(ended({JobState::Failed, JobState::Cancelled}, true).state, PipelineState::Cancelled);
    EXPECT_EQ(ended({JobState::Error}).error, "why 0") << "one job: its own error";
    EXPECT_EQ(ended({JobState::Passed, JobState::Running}).state, PipelineState::Running);
}

class PipelineScheduleStore : public test::EngineTest {};

TEST_P(PipelineScheduleStore, StoreKeepsPipelinesAndTheirJobsInPlanOrder) {
    auto opened = fixtures::open_job_store(store_spec());
    ASSERT_TRUE(opened.ok()) << opened.error().to_string();
    auto& store = **opened;
    JobInfo first = first_job();
    first.name = "";
    first.state = JobState::Queued;
    PipelineInfo p;
    p.id = first.pipeline_id;
    p.spec = first.spec;
    p.spec.owner_token_id = 7;
    first.spec.owner_token_id = 7;
    p.created_at_ms = 100;
    ASSERT_TRUE(store.insert_pipeline(p, first).ok());
    auto claimed = store.claim_next(200);
    ASSERT_TRUE(claimed.ok() && *claimed);
    EXPECT_EQ((*claimed)->pipeline_id, p.id);

    std::vector<PlannedJob> plan = {PlannedJob{"deploy", 0, {}, {"build"}}, PlannedJob{"build", 1, {}, {}}};
    int n = 1;
    auto rows = plan_rows(**claimed, plan, [&n] { return "job-00000000020" + std::to_string(n++); });
    p.state = PipelineState::Running;
    auto saved = store.save_plan(p.id, first.sha, rows, first.id, 250, nullptr);
    ASSERT_TRUE(saved.ok() && *saved);
    auto got = store.get_pipeline(p.id);
    ASSERT_TRUE(got.ok() && *got);
    ASSERT_EQ((*got)->jobs.size(), 2u);
    EXPECT_EQ((*got)->jobs[0].name, "deploy");
    EXPECT_EQ((*got)->jobs[0].state, JobState::Waiting);
    EXPECT_EQ((*got)->jobs[0].needs, std::vector<std::string>{first.id});
    EXPECT_EQ((*got)->jobs[1].id, first.id);
    EXPECT_EQ((*got)->jobs[1].state, JobState::Running);
    EXPECT_EQ((*got)->state, PipelineState::Running);
    auto none = store.claim_next(300);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(*none) << "a waiting job is never claimed";
    auto unfinished = store.count_unfinished(7);
    ASSERT_TRUE(unfinished.ok());
    EXPECT_EQ(*unfinished, 2) << "waiting jobs count against queued_jobs";

    PipelineInfo now = **got;
    now.jobs[1].state = JobState::Passed;
    ASSERT_TRUE(store.update(now.jobs[1]).ok());
    auto moved = advance_pipeline(now, 400);
    ASSERT_TRUE(store.save_progress(now, moved.changed_jobs).ok());
    auto next = store.claim_next(500);
    ASSERT_TRUE(next.ok() && *next);
    EXPECT_EQ((*next)->name, "deploy");
    auto listed = store.list_pipelines(10, 7);
    ASSERT_TRUE(listed.ok());
    ASSERT_EQ(listed->size(), 1u);
    EXPECT_EQ((*listed)[0].jobs.size(), 2u);
    auto others = store.list_pipelines(10, 8);
    ASSERT_TRUE(others.ok());
    EXPECT_TRUE(others->empty());
    auto open_ones = store.unfinished_pipelines();
    ASSERT_TRUE(open_ones.ok());
    EXPECT_EQ(*open_ones, std::vector<std::string>{p.id});
}

INSTANTIATE_ENGINE_TESTS(PipelineScheduleStore);

}  // namespace
}  // namespace kiln::ci
