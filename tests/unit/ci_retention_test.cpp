// Disk hygiene of CI without a VM: the pruner's choice (oldest first, never what is in use, the
// age limit then the byte cap), the store's queries it runs on (a real SQLite file), and the
// start-up sweep of what a killed attempt or git left in real folders.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "base/file_util.h"
#include "ci/jobs/job_retention.h"
#include "ci/jobs/job_store.h"
#include "ci/jobs/startup_sweep.h"
#include "ci_test_support.h"
#include "daemon_test_dir.h"
#include "pg_test_server.h"

namespace kiln::ci {
namespace {

constexpr int64_t kDay = 86400 * 1000;
constexpr int64_t kNow = 1000 * kDay;

using Names = std::vector<std::string>;

TEST(CiRetention, OnlyFinishedJobsPastTheAgeGoOldestFirst) {
    std::vector<PruneCandidate> c = {
        {"job-new", false, kNow - 1 * kDay, 10},
        {"job-old-running", true, kNow - 90 * kDay, 10},  // in use: never, however old
        {"job-older", false, kNow - 60 * kDay, 10},
        {"job-old", false, kNow - 31 * kDay, 10},
        {"job-edge", false, kNow - 30 * kDay, 10},        // exactly at the limit: kept
    };
    PruneChoice choice = choose_prunable(c, kNow, 30 * kDay, 0);
    EXPECT_EQ(choice.expired, (Names{"job-older", "job-old"}));
    EXPECT_TRUE(choice.over_cap.empty());
    // No age limit (0 days): nothing expires.
    EXPECT_TRUE(choose_prunable(c, kNow, 0, 0).expired.empty());
}

TEST(CiRetention, TheCapTakesTheOldestFinishedUntilTheRestFits) {
    std::vector<PruneCandidate> c = {
        {"a", false, kNow - 5 * kDay, 400},
        {"b", true, kNow - 4 * kDay, 300},   // running: counted in the total, never taken
        {"c", false, kNow - 3 * kDay, 200},
        {"d", false, kNow - 2 * kDay, 100},
        {"e", false, kNow - 1 * kDay, 100},
    };
    // 1100 bytes, cap 500: a (400) leaves 700, b is skipped, c (200) leaves 500: done.
    PruneChoice choice = choose_prunable(c, kNow, 0, 500);
    EXPECT_TRUE(choice.expired.empty());
    EXPECT_EQ(choice.over_cap, (Names{"a", "c"}));
    // Expired ones count as gone before the cap is applied.
    choice = choose_prunable(c, kNow, static_cast<int64_t>(4.5 * kDay), 500);
    EXPECT_EQ(choice.expired, (Names{"a"}));
    EXPECT_EQ(choice.over_cap, (Names{"c"}));
    // When what is in use alone passes the cap, everything else goes, and nothing in use.
    choice = choose_prunable(c, kNow, 0, 100);
    EXPECT_EQ(choice.over_cap, (Names{"a", "c", "d", "e"}));
    // Under the cap: nothing.
    EXPECT_TRUE(choose_prunable(c, kNow, 0, 5000).over_cap.empty());
}

TEST(CiRetention, TiesAreBrokenByNameNotListingOrder) {
    std::vector<PruneCandidate> c = {{"y", false, 5, 1}, {"x", false, 5, 1}};
    EXPECT_EQ(choose_prunable(c, kNow, 1, 0).expired, (Names{"x", "y"}));
}

class CiRetentionStore : public test::EngineTest {};

TEST_P(CiRetentionStore, StoreListsAgesAndDeletesOnlyOldFinishedRows) {
    auto store = fixtures::open_job_store(store_spec());
    ASSERT_TRUE(store.ok()) << store.error().to_string();
    auto job = [](const std::string& id, JobState state, int64_t finished) {
        JobInfo j;
        j.id = id;
        j.spec.repo = "/srv/" + id;
        j.sha = std::string(40, 'a');
        j.state = state;
        j.created_at_ms = 1;
        j.finished_at_ms = finished;
        return j;
    };
    ASSERT_TRUE((*store)->insert(job("job-00000000000a", JobState::Passed, 100)).ok());
    ASSERT_TRUE((*store)->insert(job("job-00000000000b", JobState::Error, 900)).ok());
    ASSERT_TRUE((*store)->insert(job("job-00000000000c", JobState::Running, 0)).ok());
    ASSERT_TRUE((*store)->insert(job("job-00000000000d", JobState::Queued, 0)).ok());
    auto ages = (*store)->job_ages();
    ASSERT_TRUE(ages.ok());
    ASSERT_EQ(ages->size(), 4u);
    for (const auto& a : *ages) {
        EXPECT_EQ(a.repo, "/srv/" + a.id);
        EXPECT_EQ(a.finished, a.id == "job-00000000000a" || a.id == "job-00000000000b") << a.id;
    }
    auto deleted = (*store)->delete_finished_before(500);
    ASSERT_TRUE(deleted.ok());
    EXPECT_EQ(*deleted, Names{"job-00000000000a"});
    EXPECT_FALSE(*(*store)->get("job-00000000000a"));
    // Unfinished jobs are never deleted, however old the cutoff.
    deleted = (*store)->delete_finished_before(int64_t(1) << 60);
    ASSERT_TRUE(deleted.ok());
    EXPECT_EQ(*deleted, Names{"job-00000000000b"});
    EXPECT_TRUE(*(*store)->get("job-00000000000c"));
    EXPECT_TRUE(*(*store)->get("job-00000000000d"));
}

INSTANTIATE_ENGINE_TESTS(CiRetentionStore);

TEST(CiStartupSweep, RemovesInterruptedCheckoutsTarsPartialsAndGitLeftoversOnly) {
    test::TempDir dir;
    const std::string jobs = dir.path() + "/jobs", git = dir.path() + "/ci/git";
    const std::string job = jobs + "/job-000000000001";
    ASSERT_TRUE(make_dirs(job + "/checkout/work/src/.git", 0700).ok());
    ASSERT_TRUE(write_file(job + "/checkout/work/src/big", std::string(1 << 20, 'x')).ok());
    ASSERT_TRUE(write_file(job + "/code.tar", std::string(1 << 16, 't')).ok());
    ASSERT_TRUE(write_file(job + "/needs.tar", "the needed jobs' artifacts").ok());
    ASSERT_TRUE(write_file(job + "/log.ndjson", "{}\n").ok());
    ASSERT_TRUE(make_dirs(job + "/artifacts", 0700).ok());
    ASSERT_TRUE(write_file(job + "/artifacts/0", "kept").ok());
    ASSERT_TRUE(write_file(job + "/artifacts.partial", "half").ok());
    ASSERT_TRUE(write_file(job + "/artifact-2.partial", "a shard's half").ok());
    const std::string mirror = git + "/0123456789abcdef01234567.git";
    ASSERT_TRUE(make_dirs(mirror + "/refs/kiln/jobs", 0700).ok());
    ASSERT_TRUE(make_dirs(mirror + "/objects/pack", 0700).ok());
    ASSERT_TRUE(make_dirs(mirror + "/objects/incoming-abc123", 0700).ok());
    ASSERT_TRUE(write_file(mirror + "/HEAD", "ref: refs/heads/main\n").ok());
    ASSERT_TRUE(write_file(mirror + "/shallow.lock", "").ok());
    ASSERT_TRUE(write_file(mirror + "/refs/kiln/jobs/abc.lock", "").ok());
    ASSERT_TRUE(write_file(mirror + "/objects/pack/tmp_pack_XYZ", "partial pack").ok());
    ASSERT_TRUE(write_file(mirror + "/objects/pack/pack-1.pack", "whole pack").ok());
    ASSERT_TRUE(make_dirs(git + "/fedcba9876543210fedcba98.git" + kPruningSuffix + "/objects", 0700).ok());
    // A checkout staged in an area (git_source.h) and a mirror of that area left half pruned.
    ASSERT_TRUE(make_dirs(git + "/local/work/job-000000000001/work/src", 0700).ok());
    ASSERT_TRUE(write_file(git + "/local/work/job-000000000001/work/src/f", "staged").ok());
    ASSERT_TRUE(make_dirs(git + "/remote/0123456789abcdef01234567.git" + kPruningSuffix, 0700).ok());
    ASSERT_TRUE(make_dirs(git + "/remote/abcdefabcdefabcdefabcdef.git/refs/heads", 0700).ok());
    ASSERT_TRUE(write_file(git + "/remote/abcdefabcdefabcdefabcdef.git/refs/heads/main.lock", "").ok());

    SweepReport r = sweep_interrupted_work(jobs, git);
    EXPECT_EQ(r.checkouts, 2);  // the job dir's and the staged one
    EXPECT_EQ(r.tars, 2);      // code.tar, needs.tar
    EXPECT_EQ(r.partials, 2);
    // shallow.lock, the ref's lock, tmp_pack, incoming-, two .pruning mirrors, the remote area's lock
    EXPECT_EQ(r.git_leftovers, 7);
    EXPECT_GE(r.bytes, uint64_t(1) << 20);
    for (const char* gone : {"/checkout", "/code.tar", "/needs.tar", "/artifacts.partial", "/artifact-2.partial"}) EXPECT_FALSE(path_exists(job + gone)) << gone;
    for (const char* kept : {"/log.ndjson", "/artifacts/0"}) EXPECT_TRUE(path_exists(job + kept)) << kept;
    for (const char* gone : {"/shallow.lock", "/refs/kiln/jobs/abc.lock", "/objects/pack/tmp_pack_XYZ", "/objects/incoming-abc123"})
        EXPECT_FALSE(path_exists(mirror + gone)) << gone;
    for (const char* kept : {"/HEAD", "/objects/pack/pack-1.pack"}) EXPECT_TRUE(path_exists(mirror + kept)) << kept;
    EXPECT_FALSE(path_exists(git + "/fedcba9876543210fedcba98.git" + kPruningSuffix));
    EXPECT_FALSE(path_exists(git + "/local/work/job-000000000001"));
    EXPECT_TRUE(path_exists(git + "/local/work"));
    EXPECT_FALSE(path_exists(git + "/remote/0123456789abcdef01234567.git" + kPruningSuffix));
    EXPECT_FALSE(path_exists(git + "/remote/abcdefabcdefabcdefabcdef.git/refs/heads/main.lock"));
    EXPECT_TRUE(path_exists(git + "/remote/abcdefabcdefabcdefabcdef.git/refs/heads"));
    // Nothing left: a second sweep finds nothing; missing folders are fine.
    EXPECT_EQ(sweep_interrupted_work(jobs, git).total(), 0);
    EXPECT_EQ(sweep_interrupted_work(dir.path() + "/none", dir.path() + "/none2").total(), 0);
}

}  // namespace
}  // namespace kiln::ci
