// kilnd's store as kilnd opens it (kilnd_db.h), on SQLite and PostgreSQL: one connection, every
// module's migrations in one order. A file made by the kilnd before the modules declared their own migrations (its schema
// copied below as it shipped) opens with nothing lost; the shared connection serializes threads.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/db_migrations.h"
#include "ci/github/delivery_log.h"
#include "ci/jobs/job_store.h"
#include "daemon/store/db_store.h"
#include "daemon_test_dir.h"
#include "pg_test_server.h"
#include "kilnd/kilnd_db.h"

using namespace kiln;
using namespace kiln::daemon;

namespace {

// The schema as the daemon's migration list had it (versions 1-3: 2 was CI's tables), verbatim.
const Migrations kOldMigrations = {
    {1, R"sql(
CREATE TABLE tokens (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  sha256 TEXT NOT NULL UNIQUE,
  created_at_ms INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE sandboxes (
  id TEXT PRIMARY KEY,
  owner_token_id INTEGER NOT NULL REFERENCES tokens(id),
  state TEXT NOT NULL,
  template_id TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL,
  ended_at_ms INTEGER NOT NULL DEFAULT 0,
  metadata_json TEXT NOT NULL DEFAULT '{}',
  env_json TEXT NOT NULL DEFAULT '{}',
  vcpus INTEGER NOT NULL,
  memory_mib INTEGER NOT NULL,
  parent_id TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  create_ms REAL NOT NULL DEFAULT 0,
  qemu_pid INTEGER NOT NULL DEFAULT 0,
  run_dir TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sandboxes_owner ON sandboxes(owner_token_id, created_at_ms);
CREATE INDEX sandboxes_state ON sandboxes(state);
CREATE TABLE snapshots (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL DEFAULT '',
  owner_token_id INTEGER NOT NULL REFERENCES tokens(id),
  sandbox_id TEXT NOT NULL,
  template_id TEXT NOT NULL DEFAULT '',
  created_at_ms INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL DEFAULT 0,
  vcpus INTEGER NOT NULL,
  memory_mib INTEGER NOT NULL,
  dir TEXT NOT NULL
);
CREATE INDEX snapshots_owner ON snapshots(owner_token_id, created_at_ms);
)sql"},
    {2, R"sql(
CREATE TABLE ci_jobs (
  id TEXT PRIMARY KEY,
  owner_token_id INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL,
  spec_json TEXT NOT NULL,
  sha TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  template_key TEXT NOT NULL DEFAULT '',
  bake_hit INTEGER NOT NULL DEFAULT 0,
  steps_json TEXT NOT NULL DEFAULT '[]',
  junit_json TEXT NOT NULL DEFAULT '',
  artifacts_json TEXT NOT NULL DEFAULT '[]',
  created_at_ms INTEGER NOT NULL,
  started_at_ms INTEGER NOT NULL DEFAULT 0,
  finished_at_ms INTEGER NOT NULL DEFAULT 0,
  steps_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ci_jobs_state ON ci_jobs(state, created_at_ms);
CREATE TABLE ci_bake_cache (
  key TEXT PRIMARY KEY,
  template TEXT NOT NULL,
  snapshot_id TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  used_at_ms INTEGER NOT NULL
);
)sql"},
    {3, R"sql(
ALTER TABLE sandboxes ADD COLUMN network_json TEXT NOT NULL DEFAULT '{"mode":"none"}';
ALTER TABLE sandboxes ADD COLUMN has_nic INTEGER NOT NULL DEFAULT 0;
)sql"},
};

// ... and github_deliveries, which each DeliveryLog made outside any migration.
constexpr const char* kOldDeliveries = R"sql(
CREATE TABLE IF NOT EXISTS github_deliveries (
  delivery_id TEXT PRIMARY KEY,
  event TEXT NOT NULL,
  received_at_ms INTEGER NOT NULL,
  job_id TEXT NOT NULL DEFAULT ''
);
)sql";

std::set<int> recorded_versions(Db& db) {
    auto s = db.session();
    auto q = s.prepare("SELECT version FROM schema_version");
    EXPECT_TRUE(q.ok());
    std::set<int> out;
    while (q.ok() && *q->step()) out.insert(static_cast<int>(q->column_int(0)));
    return out;
}

// A kilnd.db as the old kilnd left it: its schema, its version rows, and rows in every table.
void make_old_database(const std::string& path, int64_t now) {
    auto db = Db::open(path);
    ASSERT_TRUE(db.ok()) << db.error().to_string();
    auto s = (*db)->session();
    ASSERT_TRUE(s.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)").ok());
    for (const auto& m : kOldMigrations) {
        ASSERT_TRUE(s.exec(m.sql).ok()) << m.version;
        ASSERT_TRUE(s.exec("INSERT INTO schema_version VALUES (" + std::to_string(m.version) + ", 1)").ok());
    }
    ASSERT_TRUE(s.exec(kOldDeliveries).ok());
    auto rows = R"sql(
INSERT INTO tokens (name, sha256, created_at_ms, revoked) VALUES ('alice', 'aaaa', 1000, 0), ('old', 'bbbb', 1001, 1);
INSERT INTO sandboxes (id, owner_token_id, state, template_id, created_at_ms, expires_at_ms, ended_at_ms,
  metadata_json, env_json, vcpus, memory_mib, parent_id, error, create_ms, qemu_pid, run_dir, network_json, has_nic)
  VALUES ('sb-00000000000a', 1, 'running', 'tiny', 5000, 65000, 0, '{"repo":"acme"}', '{"A":"1"}', 1, 256, '', '',
          48.5, 4242, '/data/vms/a', '{"mode":"allowlist","allow":["192.0.2.7:443"]}', 1),
         ('sb-00000000000b', 1, 'deleted', 'tiny', 4000, 64000, 4500, '{}', '{}', 1, 256, 'sb-00000000000a', '',
          0, 0, '', '{"mode":"none"}', 0);
INSERT INTO snapshots (id, name, owner_token_id, sandbox_id, template_id, created_at_ms, size_bytes, vcpus, memory_mib, dir)
  VALUES ('snap-00000000000a', 'base', 1, 'sb-00000000000a', 'tiny', 6000, 4096, 1, 256, '/data/snapshots/snap-00000000000a');
INSERT INTO ci_jobs (id, owner_token_id, state, spec_json, sha, attempts, error, template_key, bake_hit, steps_json,
  junit_json, artifacts_json, created_at_ms, started_at_ms, finished_at_ms, steps_ms)
  VALUES ('job-00000000000a', 2, 'passed',
          '{"repo":"/srv/acme","sha":"","ref":"main","trusted":true,"source":"github","labels":{"github_repo":"acme/w"}}',
          'cccccccccccccccccccccccccccccccccccccccc', 1, '', 'k1', 1,
          '[{"name":"test","state":"passed","exit_code":0,"duration_ms":42}]',
          '{"tests":5,"failures":0,"errors":0,"skipped":1}', '["out/a.txt"]', 7000, 7100, 7900, 600),
         ('job-00000000000b', 2, 'queued', '{"repo":"/srv/acme","sha":"","ref":"HEAD","trusted":false,"source":"cli","labels":{}}',
          'dddddddddddddddddddddddddddddddddddddddd', 0, '', '', 0, '[]', '', '[]', 8000, 0, 0, 0);
INSERT INTO ci_bake_cache (key, template, snapshot_id, created_at_ms, used_at_ms) VALUES ('k1', 'base', 'snap-00000000000b', 7050, 7060);
)sql";
    ASSERT_TRUE(s.exec(rows).ok());
    auto delivery = s.prepare("INSERT INTO github_deliveries (delivery_id, event, received_at_ms, job_id) VALUES ('d-1', 'push', ?, 'job-00000000000a')");
    ASSERT_TRUE(delivery.ok());
    ASSERT_TRUE(delivery->bind(1, now).run().ok());
}

class KilndDbEngines : public test::EngineTest {};

}  // namespace

TEST(KilndDb, ModulesDeclareDistinctVersionsInOneOrder) {
    std::set<int> versions;
    size_t count = 0;
    for (const auto& module : kilnd_migrations())
        for (const auto& m : module) {
            versions.insert(m.version);
            ++count;
        }
    EXPECT_EQ(versions.size(), count) << "a version is declared twice";
    EXPECT_EQ(versions, (std::set<int>{1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14}));
}

TEST_P(KilndDbEngines, ANewFileGetsEveryModulesTables) {
    auto db = open_kilnd_db(store_spec());
    ASSERT_TRUE(db.ok()) << db.error().to_string();
    EXPECT_EQ(recorded_versions(**db), (std::set<int>{1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14}));
    EXPECT_EQ(*schema_version(**db), 14);
    DbStore store(*db);
    EXPECT_TRUE(store.list_tokens().ok());
    EXPECT_TRUE(ci::JobStore::open(*db).ok());
    EXPECT_TRUE(ci::github::DeliveryLog::open(*db).ok());
}

TEST(KilndDb, AFileOfTheOldLayoutOpensWithNothingLost) {
    test::TempDir dir;
    std::string path = dir.path() + "/kilnd.db";
    int64_t now = now_unix_ms();
    make_old_database(path, now);

    for (int round = 0; round < 2; ++round) {  // the second open finds nothing to do
        auto db = open_kilnd_db(path);
        ASSERT_TRUE(db.ok()) << db.error().to_string();
        EXPECT_EQ(recorded_versions(**db), (std::set<int>{1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14})) << "round " << round;
        EXPECT_EQ(*schema_version(**db), 14);

        DbStore store(*db);
        auto tokens = store.list_tokens();
        ASSERT_TRUE(tokens.ok());
        ASSERT_EQ(tokens->size(), 2u);
        EXPECT_EQ((*tokens)[0].name, "alice");
        EXPECT_EQ((*tokens)[0].sha256_hex, "aaaa");
        EXPECT_EQ((*tokens)[0].created_at_ms, 1000);
        EXPECT_FALSE((*tokens)[0].revoked);
        EXPECT_TRUE((*tokens)[1].revoked);
        // Tokens from before scopes could do everything; they keep it (docs/tenants.md).
        EXPECT_EQ((*tokens)[0].scopes, static_cast<ScopeSet>(Scope::Admin));
        EXPECT_FALSE((*tokens)[0].quota.sandboxes.has_value());
        auto found = store.find_token_by_hash("bbbb");
        ASSERT_TRUE(found.ok() && found->has_value());
        EXPECT_EQ((*found)->name, "old");

        auto a = store.get_sandbox("sb-00000000000a");
        ASSERT_TRUE(a.ok() && a->has_value()) << (a.ok() ? "missing" : a.error().to_string());
        const SandboxInfo& i = (*a)->info;
        EXPECT_EQ(i.state(), SandboxState::Running);
        EXPECT_EQ(i.owner_token_id, 1);
        EXPECT_EQ(i.expires_at_ms, 65000);
        EXPECT_EQ(i.metadata.at("repo"), "acme");
        EXPECT_EQ(i.env.at("A"), "1");
        EXPECT_EQ(i.create_ms, 48.5);
        EXPECT_EQ(i.qemu_pid, 4242);
        EXPECT_EQ((*a)->run_dir, "/data/vms/a");
        EXPECT_EQ(i.network.mode, net::NetworkMode::Allowlist);
        EXPECT_TRUE(i.has_nic);
        EXPECT_EQ(i.host, "");  // migration 11: no host until a kilnd claims it (HostRegistry::register_self)
        auto all = store.list_sandboxes(0, false);
        ASSERT_TRUE(all.ok());
        ASSERT_EQ(all->size(), 2u);
        EXPECT_EQ((*all)[1].info.state(), SandboxState::Deleted);
        EXPECT_EQ((*all)[1].info.parent_id, "sb-00000000000a");
        EXPECT_EQ((*all)[1].info.ended_at_ms, 4500);
        auto snap = store.get_snapshot("snap-00000000000a");
        ASSERT_TRUE(snap.ok() && snap->has_value());
        EXPECT_EQ((*snap)->info.size_bytes, 4096u);
        EXPECT_EQ((*snap)->dir, "/data/snapshots/snap-00000000000a");
        EXPECT_TRUE((*snap)->info.hosts.empty());

        auto jobs = ci::JobStore::open(*db);
        ASSERT_TRUE(jobs.ok()) << jobs.error().to_string();
        auto job = (*jobs)->get("job-00000000000a");
        ASSERT_TRUE(job.ok() && job->has_value());
        const ci::JobInfo& j = **job;
        EXPECT_EQ(j.state, ci::JobState::Passed);
        EXPECT_EQ(j.spec.owner_token_id, 2);
        EXPECT_EQ(j.spec.repo, "/srv/acme");
        EXPECT_EQ(j.spec.ref, "main");
        EXPECT_EQ(j.spec.source, "github");
        EXPECT_EQ(j.spec.labels.at("github_repo"), "acme/w");
        EXPECT_EQ(j.sha, std::string(40, 'c'));
        EXPECT_EQ(j.template_key, "k1");
        EXPECT_TRUE(j.bake_hit);
        ASSERT_EQ(j.steps.size(), 1u);
        EXPECT_EQ(j.steps[0].duration_ms, 42);
        ASSERT_TRUE(j.junit.has_value());
        EXPECT_EQ(j.junit->tests, 5);
        EXPECT_EQ(j.artifacts, std::vector<std::string>{"out/a.txt"});
        EXPECT_EQ(j.finished_at_ms, 7900);
        EXPECT_EQ(j.steps_ms, 600);
        // A job from before pipelines is a pipeline of one job (migration 9).
        EXPECT_EQ(j.pipeline_id, "pipeline-00000000000a");
        EXPECT_EQ(j.name, "job");
        auto pipeline = (*jobs)->get_pipeline("pipeline-00000000000a");
        ASSERT_TRUE(pipeline.ok() && pipeline->has_value());
        EXPECT_EQ((*pipeline)->state, ci::PipelineState::Passed);
        EXPECT_EQ((*pipeline)->spec.repo, "/srv/acme");
        EXPECT_EQ((*pipeline)->finished_at_ms, 7900);
        ASSERT_EQ((*pipeline)->jobs.size(), 1u);
        EXPECT_EQ((*pipeline)->jobs[0].id, "job-00000000000a");
        // Migration 13 copied each spec's repo into a column of its own, which pages filter by.
        ci::ListPage by_repo;
        by_repo.repo = "/srv/acme";
        auto page = (*jobs)->list_page(by_repo);
        ASSERT_TRUE(page.ok()) << page.error().to_string();
        EXPECT_EQ(page->size(), 2u);
        by_repo.repo = "/srv/other";
        EXPECT_EQ((*jobs)->list_page(by_repo)->size(), 0u);
        auto listed = (*jobs)->list(10);
        ASSERT_TRUE(listed.ok());
        EXPECT_EQ(listed->size(), 2u);
        // Migration 12 left the bake with no host; the first host to start takes it.
        auto claimed = (*jobs)->claim_unowned_bakes("host-a");
        ASSERT_TRUE(claimed.ok()) << claimed.error().to_string();
        EXPECT_EQ(*claimed, round == 0 ? 1 : 0);
        auto bake = (*jobs)->find_bake("host-a", "k1", 9000);
        ASSERT_TRUE(bake.ok() && bake->has_value());
        EXPECT_EQ((*bake)->snapshot_id, "snap-00000000000b");
        EXPECT_EQ((*bake)->template_name, "base");

        auto deliveries = ci::github::DeliveryLog::open(*db);
        ASSERT_TRUE(deliveries.ok()) << deliveries.error().to_string();
        auto claim = (*deliveries)->claim("d-1", "push", "body-of-a-new-delivery", now);
        ASSERT_TRUE(claim.ok());
        EXPECT_FALSE(claim->first) << "the delivery recorded by the old kilnd was forgotten";
        EXPECT_EQ(claim->job_id, "job-00000000000a");
    }
    // The queued job is still there to run, once.
    auto db = open_kilnd_db(path);
    ASSERT_TRUE(db.ok());
    auto jobs = ci::JobStore::open(*db);
    ASSERT_TRUE(jobs.ok());
    auto next = (*jobs)->claim_next(10000);
    ASSERT_TRUE(next.ok() && next->has_value());
    EXPECT_EQ((*next)->id, "job-00000000000b");
    EXPECT_FALSE((*next)->spec.trusted);
    EXPECT_EQ((*next)->attempts, 1);
}

TEST_P(KilndDbEngines, AFileFromANewerKilndIsRefused) {
    std::string path = store_spec();
    {
        auto db = open_kilnd_db(path);
        ASSERT_TRUE(db.ok());
        ASSERT_TRUE((*db)->session().exec("INSERT INTO schema_version VALUES (999, 0)").ok());
    }
    auto db = open_kilnd_db(path);
    ASSERT_FALSE(db.ok());
    EXPECT_NE(db.error().message.find("newer"), std::string::npos) << db.error().message;
}

// Every store on one connection, from many threads at once: transactions (claim_next) never
// interleave with another thread's statements, so every job is claimed exactly once and no call
// fails (without the Session's mutex, a BEGIN meets another BEGIN: "cannot start a transaction
// within a transaction").
TEST_P(KilndDbEngines, OneConnectionServesEveryThread) {
    auto db = open_kilnd_db(store_spec());
    ASSERT_TRUE(db.ok()) << db.error().to_string();
    DbStore store(*db);
    auto jobs = ci::JobStore::open(*db).value();
    auto deliveries = ci::github::DeliveryLog::open(*db).value();
    int64_t owner = *store.insert_token("t", std::string(64, 'f'), 0);
    constexpr int kJobs = 120;
    for (int i = 0; i < kJobs; ++i) {
        ci::JobInfo job;
        char id[32];
        std::snprintf(id, sizeof id, "job-%012x", i);
        job.id = id;
        job.spec.repo = "/srv/r";
        job.created_at_ms = i;
        ASSERT_TRUE(jobs->insert(job).ok());
    }
    std::atomic<int> failures{0};
    std::mutex claimed_mutex;
    std::vector<std::string> claimed;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int n = 0;; ++n) {
                auto next = jobs->claim_next(100);
                if (!next.ok()) {
                    ++failures;
                    break;
                }
                if (!*next) break;
                {
                    std::lock_guard lock(claimed_mutex);
                    claimed.push_back((*next)->id);
                }
                (*next)->state = ci::JobState::Passed;
                if (!jobs->update(**next).ok()) ++failures;
                char id[32];
                std::snprintf(id, sizeof id, "sb-%06x%06x", t, n);
                SandboxRecord r;
                r.info.id = id;
                r.info.owner_token_id = owner;
                r.info.template_id = "tiny";
                if (!store.insert_sandbox(r).ok()) ++failures;
                if (!r.info.move_to(SandboxState::Running) || !store.update_sandbox(r).ok()) ++failures;
                auto c = deliveries->claim(std::string("d-") + id, "push", std::string("body-") + id, now_unix_ms());
                if (!c.ok() || !c->first) ++failures;
                if (!store.list_sandboxes(owner, true).ok()) ++failures;
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    std::set<std::string> unique(claimed.begin(), claimed.end());
    EXPECT_EQ(claimed.size(), static_cast<size_t>(kJobs));
    EXPECT_EQ(unique.size(), static_cast<size_t>(kJobs)) << "a job was claimed twice";
    auto live = store.list_sandboxes(owner, true);
    ASSERT_TRUE(live.ok());
    EXPECT_EQ(live->size(), static_cast<size_t>(kJobs));
}

INSTANTIATE_ENGINE_TESTS(KilndDbEngines);
