// JobRunner::run's phases up to the first agent call, against a fake sandbox service (no VM): how
// each early end is classified (the job's error, retryable infrastructure, cancel), that a VM once
// created is removed on every path and nothing is created after a cancel, the log's events, and
// that the checkout's tar does not outlive the attempt. The phases that talk to the agent run in
// tests/ci/test_jobs.py on real VMs.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <mutex>

#include "base/child_process.h"
#include "base/clock.h"
#include "base/file_util.h"
#include "ci/jobs/git_source.h"
#include "ci/jobs/job_log.h"
#include "ci/jobs/job_runner.h"
#include "ci/jobs/job_store.h"
#include "ci/pipeline/pipeline.h"
#include "ci_test_support.h"
#include "daemon_test_dir.h"

namespace kiln::ci {
namespace {

using daemon::Caller;
using daemon::SandboxInfo;
using daemon::SnapshotInfo;

constexpr const char* kSandbox = "sb-000000000001";
constexpr const char* kBakeSnapshot = "snap-00000000000b";

// Records every call; create succeeds (or returns create_error), a lease always fails (no agent
// here), only kBakeSnapshot exists.
class RecordingService : public daemon::SandboxService {
public:
    std::vector<std::string> calls;  // guarded by calls_mutex while shards run
    std::mutex calls_mutex;
    std::optional<Error> create_error;
    std::function<void()> on_create;  // e.g. the watchdog's cancel arriving during the create
    std::function<void()> on_lease;

    Result<SandboxInfo> create(const Caller&, const daemon::CreateRequest& request) override {
        record("create " + request.template_id);
        if (on_create) on_create();
        if (create_error) return *create_error;
        SandboxInfo s;
        s.id = kSandbox;
        s.template_id = request.template_id;
        return s;
    }
    Result<std::shared_ptr<daemon::SandboxLease>> lease(const Caller&, const std::string& id) override {
        record("lease " + id);
        if (on_lease) on_lease();
        return make_error(ErrorCode::SandboxNotRunning, "the sandbox is gone");
    }
    Status remove(const Caller&, const std::string& id) override {
        record("remove " + id);
        return ok_status();
    }
    Result<SnapshotInfo> get_snapshot(const Caller&, const std::string& id) override {
        if (id != kBakeSnapshot) return make_error(ErrorCode::NotFound, "no snapshot " + id);
        SnapshotInfo s;
        s.id = id;
        return s;
    }
    Result<SandboxInfo> get(const Caller&, const std::string&) override { return unused(); }
    Result<std::vector<SandboxInfo>> list(const Caller&, const daemon::ListFilter&) override { return unused(); }
    Result<SandboxInfo> set_ttl(const Caller&, const std::string&, int64_t) override { return unused(); }
    Result<SandboxInfo> pause(const Caller&, const std::string&) override { return unused(); }
    Result<SandboxInfo> resume(const Caller&, const std::string&, std::optional<int64_t>) override { return unused(); }
    Result<SnapshotInfo> snapshot(const Caller&, const std::string&, const std::string&) override { return unused(); }
    Result<SandboxInfo> fork(const Caller&, const std::string&, const daemon::ForkRequest&) override { return unused(); }
    Result<std::vector<SnapshotInfo>> list_snapshots(const Caller&) override { return unused(); }
    Status remove_snapshot(const Caller&, const std::string&) override { return unused(); }
    Result<std::vector<daemon::TemplateInfo>> list_templates(const Caller&) override { return unused(); }
    // "base" is built in; kBakeSnapshot is a snapshot named `bake_name`; nothing else exists.
    Result<daemon::TemplateInfo> get_template(const Caller&, const std::string& id) override {
        daemon::TemplateInfo t;
        t.id = id;
        if (id == "base") t.kind = "builtin";
        else if (id == kBakeSnapshot) t.kind = "snapshot", t.name = bake_name;
        else return make_error(ErrorCode::NotFound, "no template '" + id + "'");
        return t;
    }
    std::string bake_name = "ci-bake-someone-else";
    Status remove_template(const Caller&, const std::string&) override { return unused(); }
    std::map<std::string, int64_t> count_by_state() override { return {}; }

private:
    void record(std::string call) {
        std::lock_guard lock(calls_mutex);
        calls.push_back(std::move(call));
    }
    Error unused() {
        record("unexpected");
        return make_error(ErrorCode::Internal, "not used by the runner's early phases");
    }
};

using fixtures::sh;

class CiJobRunnerTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto s = fixtures::open_job_store(dir.path() + "/kilnd.db");
        ASSERT_TRUE(s.ok()) << s.error().to_string();
        store = std::move(*s);
        RunnerConfig config;
        config.jobs_dir = dir.path() + "/jobs";
        config.host = "runner-host";
        runner = std::make_unique<JobRunner>(config, service, *store, git);
    }

    // A commit of a repository with these files; its SHA.
    std::string commit(const std::map<std::string, std::string>& files) {
        const std::string src = dir.path() + "/src";
        std::string script = "export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t; "
                             "rm -rf " + src + " && git init -q -b main " + src + " && cd " + src;
        for (const auto& [name, text] : files) script += " && printf '%s' '" + text + "' > " + name;
        script += " && git add -A && git commit -q --allow-empty -m c && git rev-parse HEAD > ../sha";
        EXPECT_TRUE(sh(script).ok());
        auto sha = read_file(dir.path() + "/sha");
        EXPECT_TRUE(sha.ok());
        std::string text = sha.ok() ? *sha : "";
        while (!text.empty() && text.back() == '\n') text.pop_back();
        return text;
    }

    RunOutcome run(const std::string& sha, JobControl& control) {
        job.id = "job-0000000000a1";
        job.spec.repo = dir.path() + "/src";
        job.sha = sha;
        job.attempts = 1;
        (void)make_dirs(dir.path() + "/jobs/" + job.id, 0700);
        auto log = JobLog::open(runner->log_path(job.id));
        EXPECT_TRUE(log.ok());
        return runner->run(job, {}, **log, control, [&](const RunOutcome&) { ++progress_calls; });
    }

    // The log's event types, in order.
    std::vector<std::string> events() {
        std::vector<std::string> types;
        auto text = read_file(runner->log_path(job.id));
        if (!text.ok()) return types;
        size_t pos = 0;
        for (size_t end; (end = text->find('\n', pos)) != std::string::npos; pos = end + 1)
            types.push_back(nlohmann::json::parse(text->substr(pos, end - pos)).at("type").get<std::string>());
        return types;
    }
    bool tar_left() const { return std::filesystem::exists(dir.path() + "/jobs/" + job.id + "/code.tar"); }

    test::TempDir dir;
    std::unique_ptr<JobStore> store;
    GitCache git{dir.path() + "/git"};
    RecordingService service;
    std::unique_ptr<JobRunner> runner;
    JobInfo job;
    int progress_calls = 0;
};

const std::map<std::string, std::string> kOneStep = {{".kiln.yml", "steps:\n  - name: t\n    run: \"true\"\n"}};

TEST_F(CiJobRunnerTest, AVmThatCannotBeLeasedIsRemovedAndTheAttemptMayBeRetried) {
    JobControl control;
    std::vector<std::string> known_to_watchdog;
    service.on_lease = [&] { known_to_watchdog = control.sandboxes(); };
    auto out = run(commit(kOneStep), control);
    EXPECT_EQ(out.state, JobState::Error);
    EXPECT_TRUE(out.retryable) << out.error;
    EXPECT_EQ(out.error.rfind("the job's VM: ", 0), 0u) << out.error;
    EXPECT_EQ(service.calls, (std::vector<std::string>{"create base", std::string("lease ") + kSandbox,
                                                        std::string("remove ") + kSandbox}));
    EXPECT_EQ(known_to_watchdog, std::vector<std::string>{kSandbox}) << "the watchdog knows the VM to destroy";
    EXPECT_TRUE(control.sandboxes().empty()) << "a removed VM is no longer the job's";
    EXPECT_EQ(events(), (std::vector<std::string>{"attempt", "code", "template", "vm", "vm_removed"}));
    ASSERT_EQ(out.steps.size(), 1u);
    EXPECT_EQ(out.steps[0].state, "pending");
    EXPECT_EQ(progress_calls, 1);
    EXPECT_NE(control.deadline_ms.load(), 0) << "the job's cap starts once the pipeline is read";
    EXPECT_FALSE(tar_left());
}

TEST_F(CiJobRunnerTest, ACancelDuringTheCreateEndsCancelledAndRemovesTheVm) {
    JobControl control;
    service.on_create = [&] { control.cancel = true; };
    auto out = run(commit(kOneStep), control);
    EXPECT_EQ(out.state, JobState::Cancelled);
    EXPECT_EQ(out.error, "cancelled");
    EXPECT_FALSE(out.retryable);
    EXPECT_EQ(service.calls, (std::vector<std::string>{"create base", std::string("remove ") + kSandbox}));
    EXPECT_EQ(events(), (std::vector<std::string>{"attempt", "code", "template", "vm", "vm_removed"}));
    EXPECT_FALSE(tar_left());
}

TEST_F(CiJobRunnerTest, ACancelBeforeTheVmCreatesNone) {
    JobControl control;
    control.cancel = true;
    auto out = run(commit(kOneStep), control);
    EXPECT_EQ(out.state, JobState::Cancelled);
    EXPECT_TRUE(service.calls.empty());
    EXPECT_EQ(events(), (std::vector<std::string>{"attempt", "code", "template"}));
    EXPECT_FALSE(tar_left()) << "the tar made meanwhile is removed";
}

TEST_F(CiJobRunnerTest, TheJobsOwnMistakesAreNotRetried) {
    {
        JobControl control;
        auto out = run(commit({{"README", "no pipeline"}}), control);
        EXPECT_EQ(out.state, JobState::Error);
        EXPECT_FALSE(out.retryable);
        EXPECT_NE(out.error.find("has no .kiln.yml"), std::string::npos) << out.error;
        EXPECT_EQ(control.deadline_ms.load(), 0);
    }
    {
        JobControl control;
        auto out = run(commit({{".kiln.yml", "steps: nope\n"}}), control);
        EXPECT_EQ(out.state, JobState::Error);
        EXPECT_FALSE(out.retryable);
        EXPECT_EQ(out.error.rfind(".kiln.yml is invalid:", 0), 0u) << out.error;
    }
    {
        JobControl control;
        auto out = run(std::string(40, 'b'), control);  // a commit the repository does not have
        EXPECT_EQ(out.state, JobState::Error);
        EXPECT_EQ(out.error.rfind("getting the code: ", 0), 0u) << out.error;
    }
    {
        // A template that does not exist is the pipeline's, and said as one that may not be used.
        JobControl control;
        auto out = run(commit({{".kiln.yml", "template: nope\nsteps:\n  - name: t\n    run: \"true\"\n"}}), control);
        EXPECT_EQ(out.state, JobState::Error);
        EXPECT_FALSE(out.retryable) << out.error;
        EXPECT_NE(out.error.find("template: 'nope' is neither a built-in template"), std::string::npos) << out.error;
        EXPECT_FALSE(tar_left());
    }
    {
        // Another repository's bake: refused the same way, before any VM.
        JobControl control;
        auto out = run(commit({{".kiln.yml", std::string("template: ") + kBakeSnapshot + "\nsteps:\n  - name: t\n    run: \"true\"\n"}}),
                       control);
        EXPECT_EQ(out.state, JobState::Error);
        EXPECT_FALSE(out.retryable) << out.error;
        EXPECT_NE(out.error.find("nor a bake of this repository (" + dir.path() + "/src)"), std::string::npos) << out.error;
    }
    EXPECT_TRUE(service.calls.empty()) << "no VM was created";
}

// A sharded job's step records: the steps up to fork_after once (the job's own VM, shard -1), then
// the rest once per shard; without fork_after, every step once per shard. Fresh shards each create
// their VM (on threads of their own), and every VM created is removed.
TEST_F(CiJobRunnerTest, ShardsHaveTheirOwnStepRecordsAndVms) {
    const std::string steps = "    steps:\n      - name: prepare\n        run: \"true\"\n"
                              "      - name: test\n        run: \"true\"\n";
    JobControl forked;
    auto out = run(commit({{".kiln.yml", "jobs:\n  suite:\n    parallel: 3\n    fork_after: prepare\n" + steps}}), forked);
    std::vector<std::pair<std::string, int>> layout;
    for (const auto& s : out.steps) layout.emplace_back(s.name, s.shard);
    EXPECT_EQ(layout, (std::vector<std::pair<std::string, int>>{{"prepare", -1}, {"test", 0}, {"test", 1}, {"test", 2}}));
    EXPECT_EQ(service.calls.size(), 3u) << "one VM before the fork: create, lease (fails here), remove";

    service.calls.clear();
    JobControl fresh;
    out = run(commit({{".kiln.yml", "jobs:\n  suite:\n    parallel: 2\n" + steps}}), fresh);
    layout.clear();
    for (const auto& s : out.steps) layout.emplace_back(s.name, s.shard);
    EXPECT_EQ(layout, (std::vector<std::pair<std::string, int>>{{"prepare", 0}, {"test", 0}, {"prepare", 1}, {"test", 1}}));
    EXPECT_EQ(out.state, JobState::Error);
    EXPECT_TRUE(out.retryable) << out.error;
    EXPECT_EQ(out.error.rfind("the job's VM: ", 0), 0u) << out.error;
    std::sort(service.calls.begin(), service.calls.end());
    EXPECT_EQ(service.calls, (std::vector<std::string>{"create base", "create base", std::string("lease ") + kSandbox,
                                                        std::string("lease ") + kSandbox, std::string("remove ") + kSandbox,
                                                        std::string("remove ") + kSandbox}));
    EXPECT_TRUE(fresh.sandboxes().empty());
    EXPECT_FALSE(tar_left());
}

// The attempt runs the planned job of its record's name: a one-job file's job is `job`; a name the
// plan does not have is the pipeline's mistake (the file changed under the same SHA cannot happen;
// a hand-made row can), before any VM.
TEST_F(CiJobRunnerTest, TheAttemptRunsThePlannedJobOfItsName) {
    const std::string sha = commit(kOneStep);
    job.name = kSingleJobName;
    JobControl named;
    auto out = run(sha, named);
    EXPECT_EQ(service.calls.front(), "create base") << out.error;
    EXPECT_TRUE(out.retryable) << out.error;  // the lease fails here: infrastructure

    service.calls.clear();
    job.name = "deploy";
    JobControl unknown;
    out = run(sha, unknown);
    EXPECT_EQ(out.state, JobState::Error);
    EXPECT_FALSE(out.retryable);
    EXPECT_EQ(out.error, ".kiln.yml at " + sha + " has no job named 'deploy'");
    EXPECT_TRUE(service.calls.empty());
}

TEST_F(CiJobRunnerTest, APipelineMayNameItsOwnRepositorysBake) {
    service.bake_name = bake_snapshot_prefix(dir.path() + "/src") + "0123456789abcdef";
    service.create_error = make_error(ErrorCode::Internal, "stop here");
    JobControl control;
    auto out = run(commit({{".kiln.yml", std::string("template: ") + kBakeSnapshot + "\nsteps:\n  - name: t\n    run: \"true\"\n"}}),
                   control);
    EXPECT_EQ(service.calls, (std::vector<std::string>{std::string("create ") + kBakeSnapshot}));
    EXPECT_EQ(out.template_key.rfind("snapshot-", 0), 0u) << out.template_key;
    EXPECT_EQ(out.error.find(kBakeSnapshot), std::string::npos) << "the snapshot's id is not shown: " << out.error;
}

// A bake found a moment ago whose snapshot is gone by the create (evicted in between) is not the
// job's mistake: the attempt is retried, and bakes again.
TEST_F(CiJobRunnerTest, ABakeThatVanishedBeforeTheCreateIsRetried) {
    const std::string sha = commit({{".kiln.yml", "bake:\n  run: \"true\"\nsteps:\n  - name: t\n    run: \"true\"\n"}});
    service.create_error = make_error(ErrorCode::TemplateNotFound, "no such snapshot");
    JobControl miss_control;
    auto miss = run(sha, miss_control);
    EXPECT_FALSE(miss.bake_hit);
    EXPECT_EQ(miss.template_key.size(), 16u);
    EXPECT_FALSE(miss.retryable) << "no bake was found: the base template itself is missing";

    // Another host's bake of the key is not this host's (its files are there): still a miss.
    ASSERT_TRUE(store->put_bake(BakeEntry{miss.template_key, "base", kBakeSnapshot, "other-host"}, now_unix_ms()).ok());
    JobControl other_control;
    EXPECT_FALSE(run(sha, other_control).bake_hit);
    ASSERT_TRUE(store->put_bake(BakeEntry{miss.template_key, "base", kBakeSnapshot, "runner-host"}, now_unix_ms()).ok());
    JobControl hit_control;
    auto hit = run(sha, hit_control);
    EXPECT_TRUE(hit.bake_hit);
    EXPECT_EQ(hit.template_key, miss.template_key);
    EXPECT_EQ(hit.state, JobState::Error);
    EXPECT_TRUE(hit.retryable) << hit.error;
    EXPECT_EQ(service.calls, (std::vector<std::string>{"create base", "create base", std::string("create ") + kBakeSnapshot}));
}

}  // namespace
}  // namespace kiln::ci
