// The GitHub webhook flow without kilnd's HTTP: signatures (GitHub's published vector), payloads
// recorded by GitHub (@octokit/webhooks-examples, tests/ci/fixtures/github), the delivery log in
// real SQLite, and commit statuses posted to a loopback HTTP server. The job queue is a fake that
// records submissions; tests/ci/test_github_webhook.py runs the same against a real kilnd.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "base/db_migrations.h"
#include "base/sha256.h"
#include "ci/github/delivery_log.h"
#include "ci/github/github_webhook.h"
#include "ci/github/status_poster.h"
#include "ci/github/webhook_event.h"
#include "ci/github/webhook_signature.h"
#include "daemon_test_dir.h"
#include "pg_test_server.h"

using namespace kiln;
using namespace kiln::ci;
using namespace kiln::ci::github;
using json = nlohmann::json;

namespace {

std::string fixture(const std::string& name) {
    std::ifstream in(std::string(KILN_SOURCE_DIR) + "/tests/ci/fixtures/github/" + name);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

class FakeJobs : public JobService {
public:
    std::mutex mutex;
    std::vector<JobSpec> submitted;
    std::vector<std::function<void(const JobInfo&)>> listeners;
    std::vector<std::function<void(const PipelineInfo&)>> pipeline_listeners;
    bool fail_next = false;

    Result<JobInfo> submit(const JobSpec& spec) override {
        std::lock_guard lock(mutex);
        if (fail_next) {
            fail_next = false;
            return make_error(ErrorCode::Unavailable, "queue is shutting down");
        }
        submitted.push_back(spec);
        JobInfo info;
        char id[32];
        std::snprintf(id, sizeof id, "job-%012zx", submitted.size());
        info.id = id;
        std::snprintf(id, sizeof id, "pipeline-%012zx", submitted.size());
        info.pipeline_id = id;
        info.spec = spec;
        info.sha = spec.sha;
        // As the real queue does: the submission is a state change (to queued) too, of the job
        // (not named before the pipeline is planned) and of its pipeline.
        for (auto& l : listeners) l(info);
        PipelineInfo pipeline;
        pipeline.id = info.pipeline_id;
        pipeline.spec = spec;
        pipeline.sha = spec.sha;
        for (auto& l : pipeline_listeners) l(pipeline);
        return info;
    }
    Result<JobInfo> get(const std::string&) override { return make_error(ErrorCode::NotFound, "no"); }
    Result<std::vector<JobInfo>> list(int, int64_t) override { return std::vector<JobInfo>{}; }
    Status cancel(const std::string&) override { return ok_status(); }
    void on_state_change(std::function<void(const JobInfo&)> listener) override { listeners.push_back(std::move(listener)); }
    void on_pipeline_change(std::function<void(const PipelineInfo&)> listener) override {
        pipeline_listeners.push_back(std::move(listener));
    }
    void report(const JobInfo& info) {
        for (auto& l : listeners) l(info);
    }
    void report(const PipelineInfo& info) {
        for (auto& l : pipeline_listeners) l(info);
    }
    size_t count() {
        std::lock_guard lock(mutex);
        return submitted.size();
    }
};

// A loopback stand-in for api.github.com that records the statuses posted to it.
class StatusServer {
public:
    StatusServer() {
        m_server.Post(R"(/api/v3/repos/([^/]+)/([^/]+)/statuses/([0-9a-f]+))",
                      [this](const httplib::Request& req, httplib::Response& res) {
                          std::lock_guard lock(m_mutex);
                          json j = json::parse(req.body);
                          j["_repo"] = req.matches[1].str() + "/" + req.matches[2].str();
                          j["_sha"] = req.matches[3].str();
                          j["_auth"] = req.get_header_value("Authorization");
                          m_posts.push_back(j);
                          res.status = 201;
                          res.set_content("{}", "application/json");
                      });
        m_port = m_server.bind_to_any_port("127.0.0.1");
        m_thread = std::thread([this] { m_server.listen_after_bind(); });
    }
    ~StatusServer() {
        m_server.stop();
        m_thread.join();
    }
    std::string api_url() const { return "http://127.0.0.1:" + std::to_string(m_port) + "/api/v3"; }
    // Waits (up to 5 s) for `n` posts.
    std::vector<json> posts(size_t n) {
        for (int i = 0; i < 500; ++i) {
            {
                std::lock_guard lock(m_mutex);
                if (m_posts.size() >= n) return m_posts;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        std::lock_guard lock(m_mutex);
        return m_posts;
    }

private:
    httplib::Server m_server;
    int m_port = 0;
    std::thread m_thread;
    std::mutex m_mutex;
    std::vector<json> m_posts;
};

constexpr const char* kSecret = "It's a Secret to Everybody";

// The delivery log in the store `spec` on a connection of its own, as a kilnd start opens it.
std::unique_ptr<DeliveryLog> open_deliveries(const std::string& spec) {
    auto db = Db::open(spec);
    EXPECT_TRUE(db.ok()) << db.error().to_string();
    if (!db.ok()) return nullptr;
    auto migrated = run_migrations(**db, {delivery_migrations()});
    EXPECT_TRUE(migrated.ok()) << migrated.error().to_string();
    auto log = DeliveryLog::open(*db);
    EXPECT_TRUE(log.ok()) << log.error().to_string();
    return log.ok() ? std::move(*log) : nullptr;
}

// One webhook over the delivery log in the store `spec` names (see pg_test_server.h).
struct Rig {
    explicit Rig(std::string store_spec) : spec(std::move(store_spec)) {}
    std::string spec;
    StatusServer statuses;
    FakeJobs jobs;
    std::unique_ptr<GithubWebhook> hook;
    GithubConfig config{kSecret, statuses.api_url(), "ghs_test", "http://kiln.example:7070/", {}, {}};

    void open() {
        auto made = GithubWebhook::create(config, jobs, open_deliveries(spec));
        ASSERT_TRUE(made.ok()) << made.error().to_string();
        hook = std::move(*made);
    }
    WebhookResponse send(const std::string& event, const std::string& delivery, const std::string& body) {
        return hook->handle({event, delivery, signature_header(kSecret, body), body});
    }
};

class GithubWebhookFlow : public test::EngineTest {};

}  // namespace

TEST(GithubSignature, MatchesGithubsPublishedExample) {
    // docs.github.com, "Validating webhook deliveries": this secret and payload give this signature.
    EXPECT_EQ(signature_header(kSecret, "Hello, World!"),
              "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
    EXPECT_TRUE(verify_signature(kSecret, "Hello, World!",
                                 "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
    EXPECT_TRUE(verify_signature(kSecret, "Hello, World!",
                                 "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17"));
    EXPECT_FALSE(verify_signature(kSecret, "Hello, World?",
                                  "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
    EXPECT_FALSE(verify_signature("", "x", signature_header("", "x")));  // no secret: nothing verifies
    EXPECT_FALSE(verify_signature(kSecret, "x", ""));
    EXPECT_FALSE(verify_signature(kSecret, "x", "sha1=" + signature_header(kSecret, "x").substr(7)));
    EXPECT_FALSE(verify_signature(kSecret, "x", signature_header(kSecret, "x") + "0"));
    std::string bad_hex = signature_header(kSecret, "x");
    bad_hex[10] = 'g';
    EXPECT_FALSE(verify_signature(kSecret, "x", bad_hex));
}

TEST(GithubPayload, RecordedPullRequestAndPush) {
    auto pr = parse_webhook_event("pull_request", fixture("pull_request.opened.json"));
    ASSERT_TRUE(pr.ok()) << pr.error().to_string();
    EXPECT_EQ(pr->kind, EventKind::PullRequest);
    EXPECT_EQ(pr->repo_full_name, "Codertocat/Hello-World");
    EXPECT_EQ(pr->clone_url, "https://github.com/Codertocat/Hello-World.git");
    EXPECT_EQ(pr->git_host, "github.com");
    EXPECT_EQ(pr->sha, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    EXPECT_EQ(pr->pr_number, 2);
    EXPECT_TRUE(pr->trusted);

    for (const char* f : {"pull_request.synchronize.json", "pull_request.reopened.json"}) {
        auto ev = parse_webhook_event("pull_request", fixture(f));
        ASSERT_TRUE(ev.ok()) << f;
        EXPECT_EQ(ev->kind, EventKind::PullRequest) << f;
    }
    auto closed = parse_webhook_event("pull_request", fixture("pull_request.closed.json"));
    ASSERT_TRUE(closed.ok());
    EXPECT_EQ(closed->kind, EventKind::Ignored);

    auto push = parse_webhook_event("push", fixture("push.json"));
    ASSERT_TRUE(push.ok()) << push.error().to_string();
    EXPECT_EQ(push->kind, EventKind::Push);
    EXPECT_EQ(push->sha, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    EXPECT_EQ(push->ref, "refs/heads/master");
    EXPECT_TRUE(push->trusted);
    auto deleted = parse_webhook_event("push", fixture("push.deleted.json"));
    ASSERT_TRUE(deleted.ok());
    EXPECT_EQ(deleted->kind, EventKind::Ignored);

    EXPECT_EQ(parse_webhook_event("ping", fixture("ping.json"))->kind, EventKind::Ping);
    EXPECT_EQ(parse_webhook_event("issues", "not even json")->kind, EventKind::Ignored);
}

TEST(GithubPayload, ForksAndOtherReposAreUntrusted) {
    json base = json::parse(fixture("pull_request.opened.json"));
    json fork = base;
    fork["pull_request"]["head"]["repo"]["fork"] = true;
    fork["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World";
    fork["pull_request"]["head"]["repo"]["id"] = 999;
    auto ev = parse_webhook_event("pull_request", fork.dump());
    ASSERT_TRUE(ev.ok());
    EXPECT_FALSE(ev->trusted);
    EXPECT_EQ(ev->head_repo_full_name, "mallory/Hello-World");

    json other = base;  // not marked a fork, but another repository all the same
    other["pull_request"]["head"]["repo"]["full_name"] = "Codertocat/Other";
    EXPECT_FALSE(parse_webhook_event("pull_request", other.dump())->trusted);

    json gone = base;  // a deleted fork
    gone["pull_request"]["head"]["repo"] = nullptr;
    EXPECT_FALSE(parse_webhook_event("pull_request", gone.dump())->trusted);
}

TEST(GithubPayload, HostileFieldsAreRefused) {
    json base = json::parse(fixture("pull_request.opened.json"));
    auto refused = [](json j) { return !parse_webhook_event("pull_request", j.dump()).ok(); };
    json j = base;
    j["pull_request"]["head"]["sha"] = "--upload-pack=evil";
    EXPECT_TRUE(refused(j));
    j = base;
    j["repository"]["full_name"] = "a/b/../../c";
    EXPECT_TRUE(refused(j));
    j = base;
    j["repository"]["clone_url"] = "--config=core.sshCommand=evil";
    EXPECT_TRUE(refused(j));
    j = base;
    j["repository"] = "x";
    EXPECT_TRUE(refused(j));
    j = base;
    j["pull_request"]["number"] = "2";
    j.erase("number");
    EXPECT_TRUE(refused(j));
    EXPECT_FALSE(parse_webhook_event("push", "[1,2]").ok());
    EXPECT_FALSE(parse_webhook_event("push", "{\"after\": 5}").ok());
}

TEST(GithubPayload, GitHost) {
    EXPECT_EQ(git_host_of("https://github.com/o/r.git"), "github.com");
    EXPECT_EQ(git_host_of("https://x-access-token:t@ghe.example:8443/o/r"), "ghe.example");
    EXPECT_EQ(git_host_of("git@github.com:o/r.git"), "github.com");
    EXPECT_EQ(git_host_of("ssh://git@[2001:db8::1]:22/o/r"), "2001:db8::1");
    EXPECT_EQ(git_host_of("/srv/git/r"), "");
    EXPECT_EQ(git_host_of("file:///srv/git/r"), "");
}

TEST_P(GithubWebhookFlow, SignatureDedupTrustAndStatuses) {
    Rig rig(store_spec());
    rig.open();
    std::string body = fixture("pull_request.opened.json");

    // Bad or missing signature: 401, no job.
    auto r = rig.hook->handle({"pull_request", "d-1", "sha256=" + std::string(64, '0'), body});
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.body["error"]["code"], "unauthorized");
    EXPECT_EQ(rig.hook->handle({"pull_request", "d-1", "", body}).status, 401);
    EXPECT_EQ(rig.jobs.count(), 0u);

    // A good one: a trusted job, and a pending status linking to it.
    r = rig.send("pull_request", "d-1", body);
    ASSERT_EQ(r.status, 201) << r.body.dump();
    EXPECT_EQ(r.body["trusted"], true);
    std::string job_id = r.body["job_id"];
    EXPECT_EQ(r.body["pipeline_id"], "pipeline-000000000001");
    ASSERT_EQ(rig.jobs.count(), 1u);
    const JobSpec& spec = rig.jobs.submitted[0];
    EXPECT_EQ(spec.source, "github");
    EXPECT_EQ(spec.sha, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    EXPECT_EQ(spec.repo, "https://github.com/Codertocat/Hello-World.git");
    EXPECT_TRUE(spec.trusted);
    EXPECT_EQ(spec.labels.at("github_delivery"), "d-1");
    EXPECT_EQ(spec.labels.count("network"), 0u);

    // The same delivery again: no second job, and the answer names the first.
    r = rig.send("pull_request", "d-1", body);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body["duplicate"], true);
    EXPECT_EQ(r.body["job_id"], job_id);
    EXPECT_EQ(rig.jobs.count(), 1u);


    // Queued, the pipeline has a pending status of its own (context "kiln", linking to the
    // pipeline); its first job, not named before the pipeline is planned, has none yet.
    auto posts = rig.statuses.posts(1);
    ASSERT_EQ(posts.size(), 1u);
    EXPECT_EQ(posts[0]["context"], "kiln");
    EXPECT_EQ(posts[0]["state"], "pending");
    EXPECT_EQ(posts[0]["description"], "queued in kiln");
    EXPECT_EQ(posts[0]["target_url"], "http://kiln.example:7070/ui/pipelines/pipeline-000000000001");

    // Planned as one job ("job": a file with top-level steps), which runs and passes: pending,
    // then success under kiln/job linking to the job; then the pipeline passes.
    JobInfo info = {};
    info.id = job_id;
    info.pipeline_id = "pipeline-000000000001";
    info.name = "job";
    info.spec = spec;
    info.sha = spec.sha;
    info.state = JobState::Running;
    rig.jobs.report(info);
    info.state = JobState::Passed;
    info.junit = JunitTotals{3, 0, 0, 0};
    rig.jobs.report(info);
    PipelineInfo pipeline;
    pipeline.id = info.pipeline_id;
    pipeline.spec = spec;
    pipeline.sha = spec.sha;
    pipeline.state = PipelineState::Passed;
    pipeline.jobs = {info};
    rig.jobs.report(pipeline);
    posts = rig.statuses.posts(4);
    ASSERT_EQ(posts.size(), 4u);
    EXPECT_EQ(posts[1]["state"], "pending");
    EXPECT_EQ(posts[2]["state"], "success");
    EXPECT_EQ(posts[2]["description"], "passed: 3 tests, 0 failures, 0 errors");
    for (int i : {1, 2}) {
        EXPECT_EQ(posts[i]["context"], "kiln/job");
        EXPECT_EQ(posts[i]["target_url"], "http://kiln.example:7070/ui/jobs/" + job_id);
    }
    EXPECT_EQ(posts[3]["context"], "kiln");
    EXPECT_EQ(posts[3]["state"], "success");
    EXPECT_EQ(posts[3]["description"], "passed: 1 of 1 job passed");
    for (const auto& p : posts) {
        EXPECT_EQ(p["_repo"], "Codertocat/Hello-World");
        EXPECT_EQ(p["_sha"], "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
        EXPECT_EQ(p["_auth"], "Bearer ghs_test");
    }

    // A late "running" from a racing thread after the final status is not posted, for the job
    // nor for the pipeline.
    info.state = JobState::Running;
    rig.jobs.report(info);
    pipeline.state = PipelineState::Running;
    rig.jobs.report(pipeline);

    // A fork PR: untrusted, no secrets, network restricted to the git host.
    json fork = json::parse(body);
    fork["pull_request"]["head"]["repo"]["fork"] = true;
    fork["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World";
    r = rig.send("pull_request", "d-2", fork.dump());
    ASSERT_EQ(r.status, 201) << r.body.dump();
    EXPECT_EQ(r.body["trusted"], false);
    const JobSpec& untrusted = rig.jobs.submitted[1];
    EXPECT_FALSE(untrusted.trusted);
    EXPECT_TRUE(untrusted.secrets.empty());
    EXPECT_EQ(untrusted.labels.at("network"), "restricted");
    EXPECT_EQ(untrusted.labels.at("network_allow_hosts"), "github.com");

    // The first job ended: nothing more is posted for it, whatever a racing thread reports.
    info.state = JobState::Failed;
    info.junit = JunitTotals{3, 1, 0, 0};
    rig.jobs.report(info);
    info.state = JobState::Error;
    rig.jobs.report(info);
    posts = rig.statuses.posts(5);
    ASSERT_EQ(posts.size(), 5u);  // the fork's pipeline queued; the first job and pipeline ended already
    EXPECT_EQ(posts[4]["state"], "pending");
    EXPECT_EQ(posts[4]["context"], "kiln");
    EXPECT_EQ(posts[4]["description"], "queued in kiln (untrusted: no secrets)");
    JobInfo other = info;  // a job that fails, and one that cannot run
    other.id = "job-00000000aaaa";
    other.name = "test (18, debian)";
    other.state = JobState::Failed;
    rig.jobs.report(other);
    other.id = "job-00000000bbbb";
    other.name = "deploy";
    other.state = JobState::Skipped;
    other.error = "skipped: it needs test (18, debian), which did not pass";
    rig.jobs.report(other);
    other.id = "job-00000000cccc";
    other.name = "";  // the first job of a pipeline that could not be planned: only the pipeline's status
    other.state = JobState::Error;
    other.error = "no .kiln.yml";
    rig.jobs.report(other);
    posts = rig.statuses.posts(7);
    ASSERT_EQ(posts.size(), 7u);
    EXPECT_EQ(posts[5]["state"], "failure");
    EXPECT_EQ(posts[5]["context"], "kiln/test (18, debian)");
    EXPECT_EQ(posts[5]["description"], "failed: 3 tests, 1 failures, 0 errors");
    EXPECT_EQ(posts[6]["state"], "error");
    EXPECT_EQ(posts[6]["context"], "kiln/deploy");
    EXPECT_EQ(posts[6]["description"], "skipped: it needs test (18, debian), which did not pass");
}

TEST(GithubStatuses, PipelineDescriptionsCountTheJobs) {
    PipelineInfo p;
    p.state = PipelineState::Queued;
    EXPECT_EQ(status_for_pipeline(p)->description, "queued in kiln");
    p.spec.trusted = false;
    EXPECT_EQ(status_for_pipeline(p)->description, "queued in kiln (untrusted: no secrets)");
    for (JobState s : {JobState::Passed, JobState::Passed, JobState::Passed, JobState::Running, JobState::Waiting}) {
        JobInfo j;
        j.state = s;
        p.jobs.push_back(j);
    }
    p.state = PipelineState::Running;
    EXPECT_EQ(status_for_pipeline(p)->state, "pending");
    EXPECT_EQ(status_for_pipeline(p)->description, "running: 3 of 5 jobs passed, 2 not done");
    p.jobs[3].state = JobState::Failed;
    p.jobs[4].state = JobState::Skipped;
    p.state = PipelineState::Failed;
    EXPECT_EQ(status_for_pipeline(p)->state, "failure");
    EXPECT_EQ(status_for_pipeline(p)->description, "failed: 3 of 5 jobs passed, 1 failed, 1 skipped");
    p.jobs.pop_back();
    p.jobs[3].state = JobState::Passed;
    p.state = PipelineState::Passed;
    EXPECT_EQ(status_for_pipeline(p)->state, "success");
    EXPECT_EQ(pipeline_counts(p), "4 of 4 jobs passed");
    p.state = PipelineState::Cancelled;
    p.jobs[0].state = JobState::Cancelled;
    EXPECT_EQ(status_for_pipeline(p)->state, "error");
    EXPECT_EQ(status_for_pipeline(p)->description, "cancelled: 3 of 4 jobs passed, 1 cancelled");
    PipelineInfo broken;
    broken.state = PipelineState::Error;
    broken.error = ".kiln.yml: jobs.deploy.needs: no job 'tset'";
    EXPECT_EQ(status_for_pipeline(broken)->state, "error");
    EXPECT_EQ(status_for_pipeline(broken)->description, "kiln error: .kiln.yml: jobs.deploy.needs: no job 'tset'");
}

TEST_P(GithubWebhookFlow, DeliveriesSurviveARestartAndFailedSubmitsCanBeRedelivered) {
    Rig rig(store_spec());
    rig.open();
    std::string body = fixture("push.json");
    rig.jobs.fail_next = true;
    auto r = rig.send("push", "d-9", body);
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(rig.jobs.count(), 0u);
    r = rig.send("push", "d-9", body);  // GitHub's redelivery after the failure makes the job
    EXPECT_EQ(r.status, 201) << r.body.dump();
    EXPECT_EQ(rig.jobs.count(), 1u);

    rig.hook.reset();  // kilnd restarts: the delivery log is in kilnd.db
    rig.open();
    r = rig.send("push", "d-9", body);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body["duplicate"], true);
    EXPECT_EQ(rig.jobs.count(), 1u);
}

TEST_P(GithubWebhookFlow, TheSameBodyUnderANewDeliveryIdIsAReplay) {
    Rig rig(store_spec());
    rig.open();
    std::string body = fixture("push.json");
    auto r = rig.send("push", "d-20", body);
    ASSERT_EQ(r.status, 201) << r.body.dump();
    std::string job_id = r.body["job_id"];
    // Captured and replayed with a fresh X-GitHub-Delivery (the HMAC does not cover it).
    r = rig.send("push", "d-21", body);
    EXPECT_EQ(r.status, 200) << r.body.dump();
    EXPECT_EQ(r.body["duplicate"], true);
    EXPECT_EQ(r.body["job_id"], job_id);
    EXPECT_NE(r.body["reason"].get<std::string>().find("d-20"), std::string::npos) << r.body.dump();
    EXPECT_EQ(rig.jobs.count(), 1u);
    // Across a restart too; a different body is a new delivery.
    rig.hook.reset();
    rig.open();
    EXPECT_EQ(rig.send("push", "d-22", body).status, 200);
    json other = json::parse(body);
    other["after"] = "0000000000000000000000000000000000000001";
    other["head_commit"]["id"] = "0000000000000000000000000000000000000001";
    EXPECT_EQ(rig.send("push", "d-23", other.dump()).status, 201);
    EXPECT_EQ(rig.jobs.count(), 2u);
}

TEST_P(GithubWebhookFlow, RepositorySecretsAndAllowlist) {
    Rig rig(store_spec());
    const std::string own = "hello-world's own secret";
    rig.config.repo_webhook_secrets["codertocat/hello-world"] = own;
    rig.open();
    std::string body = fixture("push.json");  // repository Codertocat/Hello-World
    // The global secret no longer speaks for a repository with its own.
    auto r = rig.send("push", "d-30", body);
    EXPECT_EQ(r.status, 401) << r.body.dump();
    r = rig.hook->handle({"push", "d-30", signature_header(own, body), body});
    EXPECT_EQ(r.status, 201) << r.body.dump();
    // Another repository still verifies against the global secret, and not against this one's.
    json other = json::parse(body);
    other["repository"]["full_name"] = "acme/app";
    other["repository"]["clone_url"] = "https://github.com/acme/app.git";
    std::string other_body = other.dump();
    EXPECT_EQ(rig.hook->handle({"push", "d-31", signature_header(own, other_body), other_body}).status, 401);
    EXPECT_EQ(rig.send("push", "d-31", other_body).status, 201);
    EXPECT_EQ(rig.jobs.count(), 2u);

    // github_repos: a signed delivery of a repository not on it is refused, naming it.
    Rig listed(another_store());
    listed.config.repos = parse_repo_allowlist("acme/*, Codertocat/Other");
    listed.open();
    r = listed.send("push", "d-32", body);
    EXPECT_EQ(r.status, 403) << r.body.dump();
    EXPECT_NE(r.body["error"]["message"].get<std::string>().find("codertocat/hello-world"), std::string::npos);
    EXPECT_EQ(listed.send("push", "d-33", other_body).status, 201);
    EXPECT_EQ(listed.jobs.count(), 1u);
    EXPECT_TRUE(repo_allowed({}, "any/thing"));
    EXPECT_TRUE(repo_allowed(parse_repo_allowlist("acme/*"), "ACME/App"));
    EXPECT_FALSE(repo_allowed(parse_repo_allowlist("acme/*"), "acmex/app"));
    EXPECT_FALSE(repo_allowed(parse_repo_allowlist("acme/app"), "acme/app2"));
}

TEST_P(GithubWebhookFlow, IgnoredEventsPingsAndBadInput) {
    Rig rig(store_spec());
    rig.open();
    auto r = rig.send("pull_request", "d-3", fixture("pull_request.closed.json"));
    EXPECT_EQ(r.status, 202);
    EXPECT_EQ(r.body["accepted"], false);
    EXPECT_NE(r.body["reason"].get<std::string>().find("closed"), std::string::npos);
    EXPECT_EQ(rig.send("issues", "d-4", "{}").status, 202);
    EXPECT_EQ(rig.send("ping", "d-5", fixture("ping.json")).status, 200);
    EXPECT_EQ(rig.send("push", "d-6", "{not json").status, 422);
    EXPECT_EQ(rig.send("push", "", fixture("push.json")).status, 422);               // no delivery id
    EXPECT_EQ(rig.send("push", "d-7'; DROP TABLE", fixture("push.json")).status, 422);  // not a GUID
    EXPECT_EQ(rig.send("", "d-8", fixture("push.json")).status, 422);                // no event
    EXPECT_EQ(rig.jobs.count(), 0u);

    // Without a configured secret nothing is accepted, whatever the signature.
    FakeJobs jobs;
    auto unconfigured = GithubWebhook::create(GithubConfig{}, jobs, open_deliveries(rig.spec));
    ASSERT_TRUE(unconfigured.ok());
    std::string body = fixture("push.json");
    EXPECT_EQ((*unconfigured)->handle({"push", "d-10", signature_header("", body), body}).status, 503);
}

#include "daemon/config.h"

INSTANTIATE_ENGINE_TESTS(GithubWebhookFlow);

TEST(GithubConfigKeys, FileAndEnvironment) {
    test::TempDir dir;
    std::string path = dir.path() + "/kilnd.conf";
    {
        std::ofstream out(path);
        out << "github_webhook_secret = from-file\ngithub_api_url = https://ghe.example/api/v3\n"
               "github_token = file-token\npublic_url = https://kiln.example\n";
    }
    char secret_env[] = "KILN_GITHUB_WEBHOOK_SECRET=from-env";
    char* envp[] = {secret_env, nullptr};
    auto config = daemon::load_config(path, envp, {});
    ASSERT_TRUE(config.ok()) << config.error().to_string();
    EXPECT_EQ(config->github_webhook_secret, "from-env");  // env over file
    EXPECT_EQ(config->github_api_url, "https://ghe.example/api/v3");
    EXPECT_EQ(config->github_token, "file-token");
    EXPECT_EQ(config->public_url, "https://kiln.example");

    auto defaults = daemon::load_config("", nullptr, {});
    ASSERT_TRUE(defaults.ok());
    EXPECT_EQ(defaults->github_api_url, "https://api.github.com");
    EXPECT_TRUE(defaults->github_webhook_secret.empty());

    auto bad = daemon::load_config("", nullptr, {{"github_api_url", "ftp://x"}});
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.error().message.find("github_api_url"), std::string::npos);
    // The refused value is not echoed (a mistyped secret in the wrong key must not reach a log).
    auto refused = daemon::load_config("", nullptr, {{"public_url", "s3cr3t-value"}});
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().message.find("s3cr3t-value"), std::string::npos);
}

TEST_P(GithubWebhookFlow, ADeliveryRecordedByAHostThatDiedBeforeSubmittingStillMakesItsJob) {
    Rig rig(store_spec());
    rig.open();
    std::string body = fixture("push.json");
    // Another host recorded delivery d-30, then died before it queued the job (no job_id).
    auto other_host = open_deliveries(store_spec());
    auto claimed = other_host->claim("d-30", "push", sha256_hex(body), 1000);
    ASSERT_TRUE(claimed.ok() && claimed->first);
    // GitHub's redelivery (or the same delivery reaching this host) submits it, with the delivery
    // as the pipeline's submit_key: the store keeps one pipeline per key, whichever host inserts.
    auto r = rig.send("push", "d-30", body);
    EXPECT_EQ(r.status, 200) << r.body.dump();
    EXPECT_EQ(r.body["duplicate"], true);
    ASSERT_TRUE(r.body.contains("job_id")) << r.body.dump();
    ASSERT_EQ(rig.jobs.count(), 1u);
    EXPECT_EQ(rig.jobs.submitted[0].submit_key, "github-delivery:d-30");
    // Once its job is recorded, a further delivery is a plain duplicate: no submit at all.
    r = rig.send("push", "d-30", body);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body["job_id"], "job-000000000001");
    EXPECT_EQ(rig.jobs.count(), 1u);
}
