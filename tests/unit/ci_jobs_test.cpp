// The CI queue's parts that need no VM: glob matching, repo/ref checks, the job store (a real
// SQLite file and a real PostgreSQL database, migrated as kilnd does), the job log's cap and secret masking, and the host-side
// git cache against a real repository made here.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <tuple>

#include "base/child_process.h"
#include "base/file_util.h"
#include "ci/jobs/git_source.h"
#include "ci/jobs/glob_match.h"
#include "ci/jobs/job_log.h"
#include "ci/jobs/job_store.h"
#include "ci_test_support.h"
#include "daemon_test_dir.h"
#include "pg_test_server.h"

namespace kiln::ci {
namespace {

TEST(CiGlob, SegmentsAndDoubleStar) {
    EXPECT_TRUE(glob_match("reports/*.xml", "reports/junit.xml"));
    EXPECT_FALSE(glob_match("reports/*.xml", "reports/sub/junit.xml"));
    EXPECT_TRUE(glob_match("reports/**/*.xml", "reports/junit.xml"));
    EXPECT_TRUE(glob_match("reports/**/*.xml", "reports/a/b/junit.xml"));
    EXPECT_TRUE(glob_match("dist/**", "dist/a/b.js"));
    EXPECT_TRUE(glob_match("coverage/lcov.info", "coverage/lcov.info"));
    EXPECT_TRUE(glob_match("**/*.xml", "x.xml"));
    EXPECT_TRUE(glob_match("*", ".hidden"));
    EXPECT_FALSE(glob_match("*.xml", "a/b.xml"));
    EXPECT_FALSE(glob_match("out/[a-c].txt", "out/d.txt"));
    EXPECT_EQ(glob_filter({"b/*", "a"}, {"a", "b/c", "d"}).paths, (std::vector<std::string>{"a", "b/c"}));
    // A pathological pattern stays cheap (consecutive ** are one).
    EXPECT_FALSE(glob_match("**/**/**/**/**/**/**/**/z", "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p"));
}

TEST(CiGitSource, RepoAndRefChecks) {
    EXPECT_TRUE(validate_repo("/srv/git/acme").ok());
    EXPECT_TRUE(validate_repo("https://git.example.com/acme.git").ok());
    EXPECT_TRUE(validate_repo("file:///srv/acme").ok());
    for (const char* bad : {"", "relative", "-uupload-pack=x", "ext::sh -c x", "/a/../b", "/a\nb", "fd::3",
                            "git@host:repo"})
        EXPECT_FALSE(validate_repo(bad).ok()) << bad;
    EXPECT_TRUE(validate_ref("main").ok());
    EXPECT_TRUE(validate_ref("release/1.2").ok());
    EXPECT_TRUE(validate_ref("HEAD").ok());
    for (const char* bad : {"", "-x", "a..b", "a b", "a~1", "a^", "a:b", "@{1}", "x.lock", "/x", "x/"})
        EXPECT_FALSE(validate_ref(bad).ok()) << bad;
    EXPECT_TRUE(is_full_sha(std::string(40, 'a')));
    EXPECT_FALSE(is_full_sha(std::string(40, 'A')));
    EXPECT_FALSE(is_full_sha(std::string(39, 'a')));
}

class CiJobStoreTest : public test::EngineTest {
protected:
    void SetUp() override {
        test::EngineTest::SetUp();
        if (IsSkipped() || HasFailure()) return;
        auto s = fixtures::open_job_store(store_spec());
        ASSERT_TRUE(s.ok()) << s.error().to_string();
        store = std::move(*s);
    }
    JobInfo job(const std::string& id, int64_t created) {
        JobInfo j;
        j.id = id;
        j.spec.repo = "/srv/r";
        j.spec.secrets = {{"TOKEN", "never-stored"}};
        j.spec.labels = {{"k", "v"}};
        j.sha = std::string(40, 'a');
        j.created_at_ms = created;
        return j;
    }
    // A job kept that ran on `host` from the bake `key` (a hit) or baked it (a miss).
    void add_bake_run(const std::string& id, int64_t created, const std::string& key, bool hit, const std::string& host = "") {
        JobInfo j = job(id, created);
        j.template_key = key;
        j.bake_hit = hit;
        j.host = host;
        ASSERT_TRUE(store->insert(j).ok());
        ASSERT_TRUE(store->update(j).ok());
    }
    std::unique_ptr<JobStore> store;
};

TEST_P(CiJobStoreTest, QueueOrderClaimAndCrashReconcile) {
    ASSERT_TRUE(store->insert(job("job-000000000002", 20)).ok());
    ASSERT_TRUE(store->insert(job("job-000000000001", 10)).ok());
    auto first = store->claim_next(100);
    ASSERT_TRUE(first.ok() && *first);
    EXPECT_EQ((*first)->id, "job-000000000001");  // oldest first
    EXPECT_EQ((*first)->state, JobState::Running);
    EXPECT_EQ((*first)->attempts, 1);
    EXPECT_EQ((*first)->spec.labels.at("k"), "v");
    EXPECT_TRUE((*first)->spec.secrets.empty()) << "a secret reached the database";
    auto second = store->claim_next(100);
    ASSERT_TRUE(second.ok() && *second);
    EXPECT_EQ((*second)->id, "job-000000000002");
    auto none = store->claim_next(100);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(*none);

    JobInfo done = **second;
    done.state = JobState::Failed;
    done.junit = JunitTotals{5, 1, 0, 2};
    done.steps = {StepRecord{"test", "failed", 1, 42}};
    done.artifacts = {"out/a.txt"};
    ASSERT_TRUE(store->update(done).ok());

    // A restart interrupts job 1 (running, attempt 1): it is queued again, its record of the
    // interrupted attempt cleared; the finished job 2 is left alone.
    JobInfo mid = **first;
    mid.steps = {StepRecord{"build", "running", -1, 0}};
    mid.template_key = "k1";
    ASSERT_TRUE(store->update(mid).ok());
    auto interrupted = store->recover_interrupted(200, 1);
    ASSERT_TRUE(interrupted.ok());
    ASSERT_EQ(interrupted->size(), 1u);
    EXPECT_EQ((*interrupted)[0].job.id, "job-000000000001");
    EXPECT_EQ((*interrupted)[0].attempt, 1);
    EXPECT_TRUE((*interrupted)[0].requeued);
    auto a = store->get("job-000000000001");
    ASSERT_TRUE(a.ok() && *a);
    EXPECT_EQ((*a)->state, JobState::Queued);
    EXPECT_EQ((*a)->restarts, 1);
    EXPECT_TRUE((*a)->steps.empty());
    EXPECT_EQ((*a)->template_key, "");
    // Its second attempt is claimed (attempts 2) and interrupted again: final, with the reason.
    auto again = store->claim_next(300);
    ASSERT_TRUE(again.ok() && *again);
    EXPECT_EQ((*again)->attempts, 2);
    auto second_stop = store->recover_interrupted(400, 1);
    ASSERT_TRUE(second_stop.ok());
    ASSERT_EQ(second_stop->size(), 1u);
    EXPECT_FALSE((*second_stop)[0].requeued);
    EXPECT_EQ((*second_stop)[0].attempt, 2);
    a = store->get("job-000000000001");
    ASSERT_TRUE(a.ok() && *a);
    EXPECT_EQ((*a)->state, JobState::Error);
    EXPECT_EQ((*a)->restarts, 2);
    EXPECT_EQ((*a)->finished_at_ms, 400);
    EXPECT_NE((*a)->error.find("kilnd stopped"), std::string::npos) << (*a)->error;
    EXPECT_NE((*a)->error.find("not run again"), std::string::npos) << (*a)->error;
    auto b = store->get("job-000000000002");
    ASSERT_TRUE(b.ok() && *b);
    EXPECT_EQ((*b)->state, JobState::Failed);
    ASSERT_TRUE((*b)->junit.has_value());
    EXPECT_EQ((*b)->junit->failures, 1);
    EXPECT_EQ((*b)->steps.at(0).exit_code, 1);
    EXPECT_EQ((*b)->artifacts, std::vector<std::string>{"out/a.txt"});
    if (engine() == test::Engine::Sqlite) {  // the whole file: no column anywhere holds it
        auto text = read_file(store_spec());
        ASSERT_TRUE(text.ok());
        EXPECT_EQ(text->find("never-stored"), std::string::npos);
    }
}

constexpr const char* kHost = "host-a";  // the bakes' host in the one-host tests

TEST_P(CiJobStoreTest, BakeCache) {
    auto missing = store->find_bake(kHost, "k1", 1);
    ASSERT_TRUE(missing.ok());
    EXPECT_FALSE(*missing);
    ASSERT_TRUE(store->put_bake(BakeEntry{"k1", "base", "snap-000000000001", kHost}, 1).ok());
    ASSERT_TRUE(store->put_bake(BakeEntry{"k1", "base", "snap-000000000002", kHost}, 2).ok());  // a rebake replaces
    auto hit = store->find_bake(kHost, "k1", 3);
    ASSERT_TRUE(hit.ok() && *hit);
    EXPECT_EQ((*hit)->snapshot_id, "snap-000000000002");
    ASSERT_TRUE(store->drop_bake(kHost, "k1").ok());
    EXPECT_FALSE(*store->find_bake(kHost, "k1", 4));
}

// The bake list (GET /v1/bakes): most recently used first, with the hits and misses of the jobs
// kept that ran on each key; a bake no kept job names counts none; jobs of other keys do not count.
TEST_P(CiJobStoreTest, ListBakesCountsHitsAndMissesPerKey) {
    ASSERT_TRUE(store->put_bake(BakeEntry{"k1", "base", "snap-000000000001", kHost}, 10).ok());
    ASSERT_TRUE(store->put_bake(BakeEntry{"k2", "tiny", "snap-000000000002", kHost}, 20).ok());
    ASSERT_TRUE(store->find_bake(kHost, "k1", 30).ok());  // k1 used last
    const std::pair<const char*, bool> runs[] = {{"k1", false}, {"k1", true}, {"k1", true}, {"other", false}, {"", false}};
    int n = 0;
    for (const auto& [key, hit] : runs) {
        ++n;
        add_bake_run("job-00000000000" + std::to_string(n), n, key, hit);
    }
    auto listed = store->list_bakes(10);
    ASSERT_TRUE(listed.ok()) << listed.error().to_string();
    ASSERT_EQ(listed->size(), 2u);
    const BakeInfo& k1 = listed->at(0);
    EXPECT_EQ(k1.key, "k1");
    EXPECT_EQ(k1.template_name, "base");
    EXPECT_EQ(k1.snapshot_id, "snap-000000000001");
    EXPECT_EQ(k1.created_at_ms, 10);
    EXPECT_EQ(k1.used_at_ms, 30);
    EXPECT_EQ(k1.hits, 2);
    EXPECT_EQ(k1.misses, 1);
    const BakeInfo& k2 = listed->at(1);
    EXPECT_EQ(k2.key, "k2");
    EXPECT_EQ(k2.hits, 0);
    EXPECT_EQ(k2.misses, 0);
    auto one = store->list_bakes(1);
    ASSERT_TRUE(one.ok());
    ASSERT_EQ(one->size(), 1u);
    EXPECT_EQ(one->at(0).key, "k1");
}

// Eviction picks the least recently used beyond `keep`; a find counts as a use; bakes used at or
// after the idle cut-off are never picked.
TEST_P(CiJobStoreTest, BakesToEvictAreTheLeastRecentlyUsedBeyondTheKeptOnes) {
    auto keys = [](const Result<std::vector<BakeEntry>>& r) {
        std::vector<std::string> out;
        for (const auto& b : *r) out.push_back(b.key);
        return out;
    };
    ASSERT_TRUE(store->put_bake(BakeEntry{"a", "base", "snap-00000000000a", kHost}, 10).ok());
    ASSERT_TRUE(store->put_bake(BakeEntry{"b", "base", "snap-00000000000b", kHost}, 20).ok());
    ASSERT_TRUE(store->put_bake(BakeEntry{"c", "base", "snap-00000000000c", kHost}, 30).ok());
    ASSERT_TRUE(store->put_bake(BakeEntry{"d", "base", "snap-00000000000d", kHost}, 40).ok());
    EXPECT_EQ(keys(store->bakes_to_evict(kHost, 2, 1000)), (std::vector<std::string>{"a", "b"}));
    ASSERT_TRUE(store->find_bake(kHost, "a", 50).ok());  // a is now the most recently used
    EXPECT_EQ(keys(store->bakes_to_evict(kHost, 2, 1000)), (std::vector<std::string>{"b", "c"}));
    EXPECT_EQ(keys(store->bakes_to_evict(kHost, 2, 25)), (std::vector<std::string>{"b"}));  // c used at 30: too recent
    EXPECT_TRUE(store->bakes_to_evict(kHost, 4, 1000)->empty());
    EXPECT_TRUE(store->bakes_to_evict(kHost, 10, 1000)->empty());

    // The row goes only if nobody found it, and no rebake replaced it, since it was chosen.
    auto chosen = store->bakes_to_evict(kHost, 2, 1000);
    ASSERT_TRUE(chosen.ok() && chosen->size() == 2u);
    ASSERT_TRUE(store->find_bake(kHost, "b", 2000).ok());                                                // a job found b
    ASSERT_TRUE(store->put_bake(BakeEntry{"c", "base", "snap-0000000000c2", kHost}, 10).ok());          // c rebaked
    EXPECT_FALSE(*store->evict_bake(chosen->at(0), 1000));
    EXPECT_FALSE(*store->evict_bake(chosen->at(1), 1000));
    EXPECT_TRUE(*store->find_bake(kHost, "b", 2001));
    EXPECT_TRUE(*store->evict_bake(BakeEntry{"d", "base", "snap-00000000000d", kHost}, 1000));
    EXPECT_FALSE(*store->find_bake(kHost, "d", 2002));
    auto ids = store->baked_snapshot_ids();
    ASSERT_TRUE(ids.ok());
    std::sort(ids->begin(), ids->end());
    EXPECT_EQ(*ids, (std::vector<std::string>{"snap-00000000000a", "snap-00000000000b", "snap-0000000000c2"}));
}

// In a fleet each host bakes a key for itself (a bake's files are on the host that took it): a
// host finds, drops and evicts only its own bakes; the list shows every host's, each with the
// hits and misses of the jobs that ran there; bakes from before hosts go to the first host to ask.
TEST_P(CiJobStoreTest, BakesArePerHost) {
    ASSERT_TRUE(store->put_bake(BakeEntry{"k1", "base", "snap-0000000000a1", "host-a"}, 10).ok());
    EXPECT_FALSE(*store->find_bake("host-b", "k1", 11)) << "host-b has not baked k1: it must bake it itself";
    ASSERT_TRUE(store->put_bake(BakeEntry{"k1", "base", "snap-0000000000b1", "host-b"}, 12).ok());
    EXPECT_EQ((*store->find_bake("host-a", "k1", 13))->snapshot_id, "snap-0000000000a1");
    EXPECT_EQ((*store->find_bake("host-b", "k1", 14))->snapshot_id, "snap-0000000000b1");
    ASSERT_TRUE(store->put_bake(BakeEntry{"k2", "base", "snap-0000000000b2", "host-b"}, 15).ok());

    // Keep one each: host-b's older bake goes, host-a's only one stays.
    auto a_doomed = store->bakes_to_evict("host-a", 1, 1000);
    ASSERT_TRUE(a_doomed.ok());
    EXPECT_TRUE(a_doomed->empty());
    auto b_doomed = store->bakes_to_evict("host-b", 1, 1000);
    ASSERT_TRUE(b_doomed.ok());
    ASSERT_EQ(b_doomed->size(), 1u);
    EXPECT_EQ(b_doomed->at(0).key, "k1");
    EXPECT_EQ(b_doomed->at(0).host, "host-b");
    EXPECT_TRUE(*store->evict_bake(b_doomed->at(0), 1000));
    EXPECT_TRUE(*store->find_bake("host-a", "k1", 16)) << "host-b's eviction left host-a's bake of the key";
    EXPECT_FALSE(*store->find_bake("host-b", "k1", 17));
    ASSERT_TRUE(store->drop_bake("host-a", "k2").ok());  // host-a has no k2: host-b's stays
    EXPECT_TRUE(*store->find_bake("host-b", "k2", 18));

    // Counts per host: a hit on host-a counts for host-a's bake only; a job with no host (from
    // before hosts) counts for each.
    ASSERT_TRUE(store->put_bake(BakeEntry{"k1", "base", "snap-0000000000b3", "host-b"}, 19).ok());
    const std::tuple<const char*, const char*, bool> runs[] = {{"host-a", "k1", true}, {"host-b", "k1", false}, {"", "k1", true}};
    int n = 0;
    for (const auto& [host, key, hit] : runs) {
        ++n;
        add_bake_run("job-0000000000b" + std::to_string(n), n, key, hit, host);
    }
    auto listed = store->list_bakes(10);
    ASSERT_TRUE(listed.ok()) << listed.error().to_string();
    std::map<std::pair<std::string, std::string>, BakeInfo> by;
    for (const auto& b : *listed) by[{b.host, b.key}] = b;
    ASSERT_EQ(by.size(), 3u);
    EXPECT_EQ(by.at({"host-a", "k1"}).snapshot_id, "snap-0000000000a1");
    EXPECT_EQ(by.at({"host-a", "k1"}).hits, 2);
    EXPECT_EQ(by.at({"host-a", "k1"}).misses, 0);
    EXPECT_EQ(by.at({"host-b", "k1"}).hits, 1);
    EXPECT_EQ(by.at({"host-b", "k1"}).misses, 1);
    EXPECT_EQ(by.at({"host-b", "k2"}).hits + by.at({"host-b", "k2"}).misses, 0);

    // A bake of no host (from before migration 12) goes to the first host that claims; where that
    // host has the key already, the old row goes (its snapshot is then an unnamed bake, swept).
    ASSERT_TRUE(store->put_bake(BakeEntry{"k3", "base", "snap-0000000000c3", ""}, 20).ok());
    ASSERT_TRUE(store->put_bake(BakeEntry{"k1", "base", "snap-0000000000c1", ""}, 20).ok());
    auto claimed = store->claim_unowned_bakes("host-a");
    ASSERT_TRUE(claimed.ok()) << claimed.error().to_string();
    EXPECT_EQ(*claimed, 1);
    EXPECT_EQ((*store->find_bake("host-a", "k3", 21))->snapshot_id, "snap-0000000000c3");
    EXPECT_EQ((*store->find_bake("host-a", "k1", 22))->snapshot_id, "snap-0000000000a1");
    EXPECT_FALSE(*store->find_bake("", "k1", 23));
    EXPECT_EQ(*store->claim_unowned_bakes("host-b"), 0);
    auto ids = store->baked_snapshot_ids();
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(std::count(ids->begin(), ids->end(), "snap-0000000000c1"), 0);
}

INSTANTIATE_ENGINE_TESTS(CiJobStoreTest);

TEST(CiJobLog, MasksSecretsAndCapsOutput) {
    test::TempDir dir;
    std::string path = dir.path() + "/log.ndjson";
    auto log = JobLog::open(path, 4096);
    ASSERT_TRUE(log.ok());
    (*log)->set_masked({"hunter2-secret", "x"});
    (*log)->output("s", "stdout", "the key is hunter2-secret!\n");
    (*log)->event({{"type", "warning"}, {"message", "echo hunter2-secret"}});
    for (int i = 0; i < 100; ++i) (*log)->output("s", "stdout", std::string(1000, 'y'));
    (*log)->event({{"type", "end"}, {"state", "passed"}});
    auto text = read_file(path);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(text->find("hunter2-secret"), std::string::npos);
    EXPECT_NE(text->find("the key is ***!"), std::string::npos);
    EXPECT_LT(text->size(), 4096u + 1024u);
    EXPECT_NE(text->find("\"truncated\""), std::string::npos);
    EXPECT_NE(text->find("\"end\""), std::string::npos) << "events after the cap must still be written";
}

// A secret can arrive split between two chunks of a step's output (the agent sends what one
// read of the pipe gave): the log holds back a possible start of a secret until the next chunk,
// or until anything else is logged, so neither half is written on its own.
TEST(CiJobLog, MasksASecretSplitAcrossOutputChunks) {
    test::TempDir dir;
    std::string path = dir.path() + "/log.ndjson";
    auto log = JobLog::open(path);
    ASSERT_TRUE(log.ok());
    (*log)->set_masked({"hunter2-secret"});
    (*log)->output("s", "stdout", "the key is hunt");
    (*log)->output("s", "stderr", "an error between the halves\n");
    (*log)->output("s", "stdout", "er2-secret!\n");
    (*log)->output("s", "stdout", "ends with hunter2-sec");  // only a start of it: written before the next event
    (*log)->event({{"type", "step_finished"}, {"step", "s"}});
    (*log)->output("t", "stdout", "hunter2-");
    log->reset();  // closing the log writes what it held
    auto text = read_file(path);
    ASSERT_TRUE(text.ok());
    std::string stdout_data, order;
    for (size_t pos = 0; pos < text->size();) {
        size_t nl = text->find('\n', pos);
        auto line = nlohmann::json::parse(text->substr(pos, nl - pos));
        pos = nl + 1;
        order += line["type"].get<std::string>() + " ";
        if (line["type"] == "output" && line["stream"] == "stdout") stdout_data += line["data"].get<std::string>();
    }
    EXPECT_EQ(stdout_data, "the key is ***!\nends with hunter2-sechunter2-");
    EXPECT_EQ(text->find("er2-secret"), std::string::npos) << *text;
    // Everything a step printed is in the log before its step_finished.
    EXPECT_EQ(order, "output output output output output step_finished output ") << *text;
}

using fixtures::sh;

TEST(CiGitCache, ResolveFetchReadAndCheckoutTar) {
    test::TempDir dir;
    std::string src = dir.path() + "/src";
    ASSERT_TRUE(sh("export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t; "
                   "git init -q -b main " + src + " && cd " + src +
                   " && printf 'steps: []\\n' > .kiln.yml && mkdir d && echo lock > d/deps.lock"
                   " && git add -A && git commit -q -m one && git tag v1"
                   " && echo two > d/deps.lock && git commit -q -am two").ok());
    GitCache cache(dir.path() + "/cache");
    auto head = cache.resolve_ref(src, "main");
    ASSERT_TRUE(head.ok()) << head.error().to_string();
    auto tag = cache.resolve_ref(src, "v1");
    ASSERT_TRUE(tag.ok()) << tag.error().to_string();
    EXPECT_NE(*head, *tag);
    EXPECT_EQ(cache.resolve_ref(src, "nope").error().code, ErrorCode::NotFound);

    auto repo = cache.fetch(src, *tag);  // an older commit, by SHA
    ASSERT_TRUE(repo.ok()) << repo.error().to_string();
    auto yml = cache.read_file(*repo, *tag, ".kiln.yml", 1024);
    ASSERT_TRUE(yml.ok() && *yml);
    EXPECT_EQ(**yml, "steps: []\n");
    auto missing = cache.read_file(*repo, *tag, "nope.yml", 1024);
    ASSERT_TRUE(missing.ok());
    EXPECT_FALSE(*missing);
    auto folder = cache.read_file(*repo, *tag, "d", 1024);
    ASSERT_TRUE(folder.ok());
    EXPECT_FALSE(*folder) << "a folder is not a file";
    EXPECT_EQ(cache.read_file(*repo, *tag, "d/deps.lock", 2).error().code, ErrorCode::TooLarge);

    ASSERT_TRUE(cache.fetch(src, *head).ok());
    auto old_id = cache.blob_id(*repo, *tag, "d/deps.lock");
    auto new_id = cache.blob_id(*repo, *head, "d/deps.lock");
    ASSERT_TRUE(old_id.ok() && new_id.ok());
    EXPECT_EQ(old_id->size(), 40u);
    EXPECT_NE(*old_id, *new_id);
    EXPECT_EQ(*cache.blob_id(*repo, *head, "d"), "");

    // The checkout tar holds work/src at exactly that commit, with its .git, and a clean status.
    auto tar = cache.checkout_tar(*repo, *tag, dir.path());
    ASSERT_TRUE(tar.ok()) << tar.error().to_string();
    std::string out = dir.path() + "/out";
    ASSERT_TRUE(sh("mkdir " + out + " && tar -C " + out + " -xf " + *tar + " && cd " + out + "/work/src" +
                   " && test \"$(git rev-parse HEAD)\" = " + *tag + " && test \"$(cat d/deps.lock)\" = lock" +
                   " && test -z \"$(git status --porcelain)\"").ok());
    EXPECT_FALSE(std::filesystem::exists(dir.path() + "/checkout")) << "the staging checkout is removed";
    // An unknown commit: refused by id, and not the tip of HEAD either.
    EXPECT_EQ(cache.fetch(src, std::string(40, 'b')).error().code, ErrorCode::NotFound);
}

// kilnd runs with UMask=0077 under its systemd unit: the checkout it makes is then 0600/0700 on
// the host, but the tar gives the guest the modes a 022 umask would (files 0644, folders and
// executables 0755), as before.
TEST(CiGitCache, CheckoutTarModesDoNotDependOnKilndsUmask) {
    test::TempDir dir;
    std::string src = dir.path() + "/src";
    ASSERT_TRUE(sh("export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t; "
                   "git init -q -b main " + src + " && cd " + src +
                   " && mkdir d && echo x > d/file && printf '#!/bin/sh\\n' > run.sh && chmod 755 run.sh"
                   " && git add -A && git commit -q -m one && git rev-parse HEAD > ../sha").ok());
    auto sha = read_file(dir.path() + "/sha");
    ASSERT_TRUE(sha.ok());
    std::string commit = sha->substr(0, 40);
    GitCache cache(dir.path() + "/cache");
    mode_t before = ::umask(077);
    auto repo = cache.fetch(src, commit);
    auto tar = repo.ok() ? cache.checkout_tar(*repo, commit, dir.path()) : Result<std::string>(repo.error());
    ::umask(before);
    ASSERT_TRUE(tar.ok()) << tar.error().to_string();
    auto listing = run_and_capture({"tar", "-tvf", *tar}, Millis(10000), 1 << 20);
    ASSERT_TRUE(listing.ok() && listing->status.success());
    auto mode_of = [&](const std::string& path) {
        std::string line_end = " " + path + "\n";
        size_t at = listing->output.find(line_end);
        if (at == std::string::npos) return std::string("missing");
        size_t start = listing->output.rfind('\n', at);
        start = start == std::string::npos ? 0 : start + 1;
        return listing->output.substr(start, 10);
    };
    EXPECT_EQ(mode_of("work/src/d/file"), "-rw-r--r--") << listing->output;
    EXPECT_EQ(mode_of("work/src/run.sh"), "-rwxr-xr-x") << listing->output;
    EXPECT_EQ(mode_of("work/src/d/"), "drwxr-xr-x") << listing->output;
    EXPECT_EQ(mode_of("work/"), "drwxr-xr-x") << listing->output;
}

}  // namespace
}  // namespace kiln::ci
