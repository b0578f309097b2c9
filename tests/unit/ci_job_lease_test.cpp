// The CI queue's leases (migration 12, docs/ci.md): several kilnd hosts on one store, each a
// JobStore over its own connection to one real database, as separate processes would have; every
// test on both engines (SQLite, and a real PostgreSQL of the tests' own: pg_test_server.h).
// Claims, renewals, the re-queue of a lost host's job (once), the fence on a lost host's writes,
// the start-up reconcile that touches only the host's own jobs, a cancel asked on another host,
// and a submit_key that makes one pipeline however often it is submitted.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "ci/jobs/job_store.h"
#include "ci/jobs/pipeline_schedule.h"
#include "base/db_migrations.h"
#include "pg_test_server.h"

namespace kiln::ci {
namespace {

constexpr int64_t kLeaseMs = 15000;

class CiJobLeaseTest : public test::EngineTest {
protected:
    void SetUp() override {
        EngineTest::SetUp();
        if (IsSkipped()) return;
        auto db = Db::open(store_spec());
        ASSERT_TRUE(db.ok()) << db.error().to_string();
        ASSERT_TRUE(run_migrations(**db, {job_migrations()}).ok());
        auto first = JobStore::open(*db);
        ASSERT_TRUE(first.ok()) << first.error().to_string();
        a = std::move(*first);
        b = host_store();
    }
    // Another host: its own connection to the same database.
    std::unique_ptr<JobStore> host_store() {
        auto db = Db::open(store_spec());
        EXPECT_TRUE(db.ok());
        auto store = JobStore::open(*db);
        EXPECT_TRUE(store.ok());
        return std::move(*store);
    }
    static JobInfo job(const std::string& id, int64_t created) {
        JobInfo j;
        j.id = id;
        j.pipeline_id = "pipeline-" + id.substr(4);
        j.name = "job";
        j.spec.repo = "/srv/r";
        j.sha = std::string(40, 'a');
        j.created_at_ms = created;
        return j;
    }
    JobInfo stored(const std::string& id) {
        auto j = a->get(id);
        EXPECT_TRUE(j.ok() && *j);
        return j.ok() && *j ? **j : JobInfo{};
    }
    std::unique_ptr<JobStore> a, b;
};

TEST_P(CiJobLeaseTest, ClaimLeasesTheJobToItsHost) {
    ASSERT_TRUE(a->insert(job("job-000000000001", 10)).ok());
    ASSERT_TRUE(a->insert(job("job-000000000002", 20)).ok());
    auto on_a = a->claim_next(1000, "a", kLeaseMs);
    auto on_b = b->claim_next(1000, "b", kLeaseMs);
    ASSERT_TRUE(on_a.ok() && *on_a && on_b.ok() && *on_b);
    EXPECT_EQ((*on_a)->id, "job-000000000001");
    EXPECT_EQ((*on_b)->id, "job-000000000002") << "two hosts never take the same job";
    EXPECT_EQ((*on_a)->host, "a");
    EXPECT_EQ((*on_a)->attempt, 1);
    EXPECT_EQ(stored("job-000000000002").host, "b");
    auto none = a->claim_next(1000, "a", kLeaseMs);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(*none);
}

TEST_P(CiJobLeaseTest, ARenewedLeaseDoesNotExpire) {
    ASSERT_TRUE(a->insert(job("job-000000000001", 10)).ok());
    auto claimed = b->claim_next(1000, "b", kLeaseMs);
    ASSERT_TRUE(claimed.ok() && *claimed);
    auto renewed = b->renew_lease(**claimed, 10000, kLeaseMs);  // now expires at 25000
    ASSERT_TRUE(renewed.ok());
    EXPECT_TRUE(renewed->held);
    EXPECT_FALSE(renewed->cancel_requested);
    auto expired = a->requeue_expired(20000, 1);  // past the first expiry (16000), not the renewed one
    ASSERT_TRUE(expired.ok());
    EXPECT_TRUE(expired->empty());
    EXPECT_EQ(stored("job-000000000001").state, JobState::Running);
}

TEST_P(CiJobLeaseTest, ALostHostsJobIsQueuedAgainOnceAndItsWritesAreRefused) {
    ASSERT_TRUE(a->insert(job("job-000000000001", 10)).ok());
    auto on_b = b->claim_next(1000, "b", kLeaseMs);
    ASSERT_TRUE(on_b.ok() && *on_b);
    JobInfo b_run = **on_b;
    b_run.steps = {StepRecord{"build", "running", -1, 0}};
    auto wrote = b->update_leased(b_run);
    ASSERT_TRUE(wrote.ok());
    EXPECT_TRUE(*wrote);

    // b stops renewing (killed); a notices once the lease has expired.
    auto early = a->requeue_expired(1000 + kLeaseMs - 1, 1);
    ASSERT_TRUE(early.ok());
    EXPECT_TRUE(early->empty()) << "not before the lease expires";
    auto expired = a->requeue_expired(1000 + kLeaseMs + 1, 1);
    ASSERT_TRUE(expired.ok());
    ASSERT_EQ(expired->size(), 1u);
    EXPECT_TRUE((*expired)[0].requeued);
    EXPECT_EQ((*expired)[0].lost_host, "b");
    JobInfo queued = stored("job-000000000001");
    EXPECT_EQ(queued.state, JobState::Queued);
    EXPECT_EQ(queued.attempt, 2);
    EXPECT_EQ(queued.attempt_reason.rfind("attempt 2: host b lost", 0), 0u) << queued.attempt_reason;
    EXPECT_EQ(queued.host, "");
    EXPECT_TRUE(queued.steps.empty()) << "nothing of the lost attempt stays in the record";
    auto twice = b->requeue_expired(1000 + kLeaseMs + 2, 1);
    ASSERT_TRUE(twice.ok());
    EXPECT_TRUE(twice->empty()) << "one host re-queues it, once";

    // a runs attempt 2.
    auto on_a = a->claim_next(20000, "a", kLeaseMs);
    ASSERT_TRUE(on_a.ok() && *on_a);
    EXPECT_EQ((*on_a)->attempt, 2);
    EXPECT_EQ((*on_a)->attempts, 2);
    EXPECT_EQ((*on_a)->host, "a");

    // b comes back (it was only cut off): its lease is gone, and so is every write of its attempt.
    auto renewed = b->renew_lease(b_run, 21000, kLeaseMs);
    ASSERT_TRUE(renewed.ok());
    EXPECT_FALSE(renewed->held);
    b_run.state = JobState::Passed;
    b_run.error = "b's result";
    wrote = b->update_leased(b_run);
    ASSERT_TRUE(wrote.ok());
    EXPECT_FALSE(*wrote) << "a host that lost the lease must not write the job";
    JobInfo now = stored("job-000000000001");
    EXPECT_EQ(now.state, JobState::Running);
    EXPECT_EQ(now.host, "a");
    EXPECT_EQ(now.error, "");
    // Even a host of the same name cannot write with the old claim.
    JobInfo stale = b_run;
    stale.host = "a";
    wrote = a->update_leased(stale);
    ASSERT_TRUE(wrote.ok());
    EXPECT_FALSE(*wrote) << "the fence is the claim (host and attempts), not the host alone";

    // a is lost too: a second expiry ends the job, saying why.
    auto again = b->requeue_expired(20000 + kLeaseMs + 1, 1);
    ASSERT_TRUE(again.ok());
    ASSERT_EQ(again->size(), 1u);
    EXPECT_FALSE((*again)[0].requeued);
    now = stored("job-000000000001");
    EXPECT_EQ(now.state, JobState::Error);
    EXPECT_EQ(now.finished_at_ms, 20000 + kLeaseMs + 1);
    EXPECT_NE(now.error.find("host a was lost"), std::string::npos) << now.error;
    EXPECT_NE(now.error.find("not run again"), std::string::npos) << now.error;
    auto after = a->claim_next(40000, "a", kLeaseMs);
    ASSERT_TRUE(after.ok());
    EXPECT_FALSE(*after);
}

TEST_P(CiJobLeaseTest, StartUpReconcileTouchesOnlyTheHostsOwnJobs) {
    ASSERT_TRUE(a->insert(job("job-000000000001", 10)).ok());
    ASSERT_TRUE(a->insert(job("job-000000000002", 20)).ok());
    ASSERT_TRUE(a->claim_next(1000, "a", kLeaseMs).ok());
    ASSERT_TRUE(b->claim_next(1000, "b", kLeaseMs).ok());
    // a restarts: its own job is interrupted, b's runs on.
    auto recovered = a->recover_interrupted(2000, 1, "a");
    ASSERT_TRUE(recovered.ok());
    ASSERT_EQ(recovered->size(), 1u);
    EXPECT_EQ((*recovered)[0].job.id, "job-000000000001");
    EXPECT_EQ(stored("job-000000000001").state, JobState::Queued);
    EXPECT_EQ(stored("job-000000000001").attempt, 2);
    EXPECT_NE(stored("job-000000000001").attempt_reason.find("host a restarted"), std::string::npos);
    EXPECT_EQ(stored("job-000000000002").state, JobState::Running) << "another host's job is not this host's to end";
    EXPECT_EQ(stored("job-000000000002").host, "b");
}

TEST_P(CiJobLeaseTest, ACancelAskedOnAnotherHostReachesTheRunningHost) {
    ASSERT_TRUE(a->insert(job("job-000000000001", 10)).ok());
    ASSERT_TRUE(a->insert(job("job-000000000002", 20)).ok());
    auto running = b->claim_next(1000, "b", kLeaseMs);
    ASSERT_TRUE(running.ok() && *running);
    // Asked on a: the running job is flagged for b, not ended by a.
    auto ended = a->cancel_job("job-000000000001", "cancelled before it started", 1500);
    ASSERT_TRUE(ended.ok());
    EXPECT_FALSE(*ended);
    EXPECT_EQ(stored("job-000000000001").state, JobState::Running);
    auto renewed = b->renew_lease(**running, 2000, kLeaseMs);
    ASSERT_TRUE(renewed.ok());
    EXPECT_TRUE(renewed->held);
    EXPECT_TRUE(renewed->cancel_requested);
    // A queued one is ended at once, and is then never claimed.
    ended = a->cancel_job("job-000000000002", "cancelled before it started", 1500);
    ASSERT_TRUE(ended.ok() && *ended);
    EXPECT_EQ((*ended)->state, JobState::Cancelled);
    auto none = b->claim_next(3000, "b", kLeaseMs);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(*none);
}

TEST_P(CiJobLeaseTest, ASubmitKeyMakesOnePipeline) {
    auto pipeline_of = [](const JobInfo& first) {
        PipelineInfo p;
        p.id = first.pipeline_id;
        p.spec = first.spec;
        p.created_at_ms = first.created_at_ms;
        return p;
    };
    JobInfo one = job("job-000000000001", 10), two = job("job-000000000002", 11);
    one.spec.submit_key = two.spec.submit_key = "github-delivery:d1";
    auto first = a->insert_pipeline(pipeline_of(one), one);
    ASSERT_TRUE(first.ok()) << first.error().to_string();
    EXPECT_EQ(first->id, one.id);
    auto second = b->insert_pipeline(pipeline_of(two), two);
    ASSERT_TRUE(second.ok()) << second.error().to_string();
    EXPECT_EQ(second->id, one.id) << "the second submit returns the first's job";
    auto pipelines = a->list_pipelines(10);
    ASSERT_TRUE(pipelines.ok());
    EXPECT_EQ(pipelines->size(), 1u);
    // No key: every submit is its own.
    JobInfo three = job("job-000000000003", 12), four = job("job-000000000004", 13);
    ASSERT_TRUE(a->insert_pipeline(pipeline_of(three), three).ok());
    ASSERT_TRUE(a->insert_pipeline(pipeline_of(four), four).ok());
    pipelines = a->list_pipelines(10);
    ASSERT_TRUE(pipelines.ok());
    EXPECT_EQ(pipelines->size(), 3u);
}

TEST_P(CiJobLeaseTest, HostsClaimingAtOnceNeverTakeOneJobTwice) {
    constexpr int kJobs = 120, kHosts = 4;
    for (int i = 0; i < kJobs; ++i) {
        char id[32];
        std::snprintf(id, sizeof id, "job-%012d", i);
        ASSERT_TRUE(a->insert(job(id, i)).ok());
    }
    std::vector<std::unique_ptr<JobStore>> hosts;
    for (int h = 0; h < kHosts; ++h) hosts.push_back(host_store());
    std::mutex mutex;
    std::map<std::string, int> claims;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int h = 0; h < kHosts; ++h)
        threads.emplace_back([&, h] {
            for (;;) {
                auto next = hosts[h]->claim_next(1000, "host" + std::to_string(h), kLeaseMs);
                if (!next.ok()) {
                    ++failures;
                    continue;
                }
                if (!*next) return;
                std::lock_guard lock(mutex);
                ++claims[(*next)->id];
            }
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(claims.size(), size_t(kJobs));
    for (const auto& [id, n] : claims) EXPECT_EQ(n, 1) << id << " was claimed " << n << " times";
}

// A pipeline: `build` (running on host b) and `deploy`, waiting for it.
class CiPipelineFleetTest : public CiJobLeaseTest {
protected:
    void SetUp() override {
        CiJobLeaseTest::SetUp();
        if (IsSkipped()) return;
        JobInfo build = job("job-00000000000b", 10);
        build.pipeline_id = "pipeline-000000000001";
        PipelineInfo p;
        p.id = build.pipeline_id;
        p.spec = build.spec;
        p.created_at_ms = 10;
        ASSERT_TRUE(a->insert_pipeline(p, build).ok());
        JobInfo deploy = job("job-00000000000d", 10);
        deploy.pipeline_id = p.id;
        deploy.name = "deploy";
        deploy.plan_index = 1;
        deploy.state = JobState::Waiting;
        deploy.needs = {build.id};
        ASSERT_TRUE(a->insert(deploy).ok());
        auto claimed = b->claim_next(1000, "b", kLeaseMs);
        ASSERT_TRUE(claimed.ok() && *claimed);
        running = **claimed;
    }
    static PipelineChange advance(PipelineInfo& p) {
        PipelineAdvance moved = advance_pipeline(p, 5000);
        return PipelineChange{moved.changed_jobs, {}, moved.pipeline_changed};
    }
    JobInfo running;
};

TEST_P(CiPipelineFleetTest, HostsMovingOnOnePipelineAtOnceQueueItsNextJobOnce) {
    running.state = JobState::Passed;
    running.finished_at_ms = 4000;
    auto ended = b->update_leased(running);
    ASSERT_TRUE(ended.ok() && *ended);
    // Every host moves the pipeline on at once (each saw a job of it end): one of them queues deploy.
    std::vector<std::unique_ptr<JobStore>> hosts;
    for (int h = 0; h < 4; ++h) hosts.push_back(host_store());
    std::atomic<int> queued_it{0}, failures{0};
    std::vector<std::thread> threads;
    for (auto& h : hosts)
        threads.emplace_back([&, store = h.get()] {
            PipelineChange applied;
            auto p = store->change_pipeline("pipeline-000000000001", advance, &applied);
            if (!p.ok() || !*p) {
                ++failures;
                return;
            }
            for (size_t i : applied.changed_jobs)
                if ((*p)->jobs[i].id == "job-00000000000d" && (*p)->jobs[i].state == JobState::Queued) ++queued_it;
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(queued_it.load(), 1) << "deploy was queued by more than one host";
    EXPECT_EQ(stored("job-00000000000d").state, JobState::Queued);
}

TEST_P(CiPipelineFleetTest, ACancelOnOneHostEndsWhatWaitsAndAsksTheRunningHostToStop) {
    PipelineChange applied;
    auto p = a->change_pipeline("pipeline-000000000001", [](PipelineInfo& pipeline) {
        PipelineChange change;
        pipeline.cancel_requested = true;
        change.pipeline_changed = true;
        for (size_t i = 0; i < pipeline.jobs.size(); ++i) {
            if (pipeline.jobs[i].state == JobState::Waiting) {
                pipeline.jobs[i].state = JobState::Cancelled;
                change.changed_jobs.push_back(i);
            } else if (pipeline.jobs[i].state == JobState::Running) {
                change.cancel_running.push_back(i);
            }
        }
        return change;
    }, &applied);
    ASSERT_TRUE(p.ok() && *p) << (p.ok() ? "no pipeline" : p.error().to_string());
    EXPECT_EQ(applied.changed_jobs.size(), 1u);
    EXPECT_EQ(applied.cancel_running.size(), 1u);
    EXPECT_EQ(stored("job-00000000000d").state, JobState::Cancelled);
    auto renewed = b->renew_lease(running, 2000, kLeaseMs);
    ASSERT_TRUE(renewed.ok());
    EXPECT_TRUE(renewed->held);
    EXPECT_TRUE(renewed->cancel_requested) << "host b must learn of the cancel through its lease";
    // b ends its job cancelled; the pipeline then ends, moved on by any host.
    running.state = JobState::Cancelled;
    auto ended = b->update_leased(running);
    ASSERT_TRUE(ended.ok() && *ended);
    p = a->change_pipeline("pipeline-000000000001", advance, &applied);
    ASSERT_TRUE(p.ok() && *p);
    EXPECT_EQ((*p)->state, PipelineState::Cancelled);
}

INSTANTIATE_ENGINE_TESTS(CiJobLeaseTest);
INSTANTIATE_ENGINE_TESTS(CiPipelineFleetTest);

}  // namespace
}  // namespace kiln::ci
