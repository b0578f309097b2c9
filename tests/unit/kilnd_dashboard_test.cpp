// The dashboard's server side over a real loopback socket, real SQLite (kilnd.db with every
// migration) and the real token and session stores: its files and headers, signing in and out, the
// session cookie's CSRF and origin checks, a revoked token's sessions, and the paged lists with
// 10,000 jobs in the store (the first page well under 300 ms). The sandbox service is a stub that
// has no sandboxes: these routes never reach it.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/sha256.h"
#include "ci/jobs/job_service.h"
#include "ci/jobs/job_store.h"
#include "daemon/auth/session_store.h"
#include "daemon/auth/token_store.h"
#include "daemon/store/db_store.h"
#include "daemon_test_dir.h"
#include "pg_test_server.h"
#include "kilnd/http/http_server.h"
#include "kilnd/http/ui_assets.h"
#include "kilnd/http/ui_session.h"
#include "kilnd/kilnd_db.h"

using namespace kiln;
using namespace kiln::daemon;
using json = nlohmann::json;
using kiln::daemon::http::ui_assets;

namespace {

// No sandboxes at all: the routes under test never need one.
class NoSandboxes : public SandboxService {
    static Error none() { return make_error(ErrorCode::NotFound, "no sandboxes here"); }

public:
    Result<SandboxInfo> create(const Caller&, const CreateRequest&) override { return none(); }
    Result<SandboxInfo> get(const Caller&, const std::string&) override { return none(); }
    Result<std::vector<SandboxInfo>> list(const Caller&, const ListFilter&) override { return std::vector<SandboxInfo>{}; }
    Result<SandboxInfo> set_ttl(const Caller&, const std::string&, int64_t) override { return none(); }
    Result<SandboxInfo> pause(const Caller&, const std::string&) override { return none(); }
    Result<SandboxInfo> resume(const Caller&, const std::string&, std::optional<int64_t>) override { return none(); }
    Status remove(const Caller&, const std::string&) override { return none(); }
    Result<std::shared_ptr<SandboxLease>> lease(const Caller&, const std::string&) override { return none(); }
    Result<SnapshotInfo> snapshot(const Caller&, const std::string&, const std::string&) override { return none(); }
    Result<SandboxInfo> fork(const Caller&, const std::string&, const ForkRequest&) override { return none(); }
    Result<std::vector<SnapshotInfo>> list_snapshots(const Caller&) override { return std::vector<SnapshotInfo>{}; }
    Result<SnapshotInfo> get_snapshot(const Caller&, const std::string&) override { return none(); }
    Status remove_snapshot(const Caller&, const std::string&) override { return none(); }
    Result<std::vector<TemplateInfo>> list_templates(const Caller&) override { return std::vector<TemplateInfo>{}; }
    Result<TemplateInfo> get_template(const Caller&, const std::string&) override { return none(); }
    Status remove_template(const Caller&, const std::string&) override { return none(); }
    std::map<std::string, int64_t> count_by_state() override { return {}; }
};

// The read side of the CI queue straight from the real JobStore (no workers: nothing runs here).
class StoreJobs : public ci::JobService {
public:
    explicit StoreJobs(ci::JobStore& store) : m_store(store) {}
    Result<ci::JobInfo> submit(const ci::JobSpec&) override { return make_error(ErrorCode::Unavailable, "read only"); }
    Result<ci::JobInfo> get(const std::string& id) override {
        auto j = TRY(m_store.get(id));
        if (!j) return make_error(ErrorCode::NotFound, "no job");
        return *j;
    }
    Result<std::vector<ci::JobInfo>> list(int limit, int64_t owner) override { return m_store.list(limit, owner); }
    Status cancel(const std::string&) override { return ok_status(); }
    void on_state_change(std::function<void(const ci::JobInfo&)>) override {}
    Result<ci::PipelineInfo> get_pipeline(const std::string& id) override {
        auto p = TRY(m_store.get_pipeline(id));
        if (!p) return make_error(ErrorCode::NotFound, "no pipeline");
        return *p;
    }
    Result<std::vector<ci::JobInfo>> list_page(const ci::ListPage& page) override { return m_store.list_page(page); }
    Result<std::vector<ci::PipelineInfo>> list_pipelines_page(const ci::ListPage& page) override {
        return m_store.list_pipelines_page(page);
    }

private:
    ci::JobStore& m_store;
};

class Dashboard : public test::EngineTest {
protected:
    void SetUp() override {
        test::EngineTest::SetUp();
        if (IsSkipped() || HasFailure()) return;
        auto db = open_kilnd_db(store_spec());
        ASSERT_TRUE(db.ok()) << db.error().to_string();
        m_db = *db;
        m_store = std::make_unique<DbStore>(m_db);
        m_tokens = std::make_unique<TokenStore>(*m_store);
        m_sessions = std::make_unique<SessionStore>(m_db, *m_tokens);
        auto admin = m_tokens->create(TokenSpec{"alice", static_cast<ScopeSet>(Scope::Admin), {}});
        auto tenant = m_tokens->create(TokenSpec{"carol", static_cast<ScopeSet>(Scope::CiSubmit), {}});
        ASSERT_TRUE(admin.ok() && tenant.ok());
        m_admin = admin->token;
        m_tenant = tenant->token;
        auto jobs = ci::JobStore::open(m_db);
        ASSERT_TRUE(jobs.ok());
        m_job_store = std::move(*jobs);
        m_jobs = std::make_unique<StoreJobs>(*m_job_store);

        HttpConfig config;
        config.listen = "127.0.0.1:0";
        config.worker_threads = 4;
        config.jobs = m_jobs.get();
        config.sessions = m_sessions.get();
        config.public_url = "https://ci.example.com";
        auto server = HttpServer::create(config, m_service, *m_sessions, m_metrics);
        ASSERT_TRUE(server.ok()) << server.error().to_string();
        m_server = std::move(*server);
        ASSERT_TRUE(m_server->bind().ok());
        m_thread = std::thread([this] { (void)m_server->serve(); });
    }
    void TearDown() override {
        if (m_server) m_server->stop();
        if (m_thread.joinable()) m_thread.join();
    }

    httplib::Client client() {
        httplib::Client c("127.0.0.1", m_server->port());
        c.set_read_timeout(30, 0);
        return c;
    }
    std::string origin() const { return "http://127.0.0.1:" + std::to_string(m_server->port()); }

    struct Signed {
        std::string cookie;  // "kiln_session=..."
        std::string csrf;
        std::string set_cookie;
    };
    Signed sign_in(const std::string& token) {
        auto c = client();
        auto r = c.Post("/ui/session", httplib::Headers{{"Origin", origin()}}, json{{"token", token}}.dump(), "application/json");
        EXPECT_TRUE(r);
        if (!r) return {};
        EXPECT_EQ(r->status, 201) << r->body;
        Signed s;
        s.set_cookie = r->get_header_value("Set-Cookie");
        s.cookie = s.set_cookie.substr(0, s.set_cookie.find(';'));
        s.csrf = json::parse(r->body).value("csrf", "");
        return s;
    }

    // Inserts `n` pipelines of one job each: the first through the store, the rest copied from it
    // in one statement (fast), with distinct ids, times, repositories and states.
    void insert_jobs(int n) {
        ci::JobInfo first;
        first.id = "job-000000000000";
        first.pipeline_id = "pipeline-000000000000";
        first.name = "job";
        first.state = ci::JobState::Passed;
        first.spec.repo = "https://git.example.com/r0";
        first.spec.owner_token_id = 1;
        first.created_at_ms = 1000;
        ci::PipelineInfo p;
        p.id = first.pipeline_id;
        p.spec = first.spec;
        p.state = ci::PipelineState::Passed;
        p.created_at_ms = 1000;
        ASSERT_TRUE(m_job_store->insert_pipeline(p, first).ok());
        // The copies are made by SQL of each engine's own (the store's SQL is shared; a test's
        // bulk insert need not be): ids, times, states and repositories from a counter.
        auto s = m_db->session();
        const std::string last = std::to_string(n - 1);
        std::string copies = m_db->engine() == DbEngine::Sqlite ? R"sql(
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < )sql" + last + R"sql()
INSERT INTO ci_jobs (id, owner_token_id, state, spec_json, sha, created_at_ms, pipeline_id, name, repo)
  SELECT printf('job-%012x', i), owner_token_id, CASE i % 3 WHEN 0 THEN 'failed' ELSE 'passed' END,
         json_set(spec_json, '$.repo', 'https://git.example.com/r' || (i % 4)), sha, 1000 + i,
         printf('pipeline-%012x', i), name, 'https://git.example.com/r' || (i % 4)
  FROM n, ci_jobs WHERE ci_jobs.id = 'job-000000000000';
INSERT INTO ci_pipelines (id, owner_token_id, state, spec_json, sha, created_at_ms, repo)
  SELECT pipeline_id, owner_token_id, state, spec_json, sha, created_at_ms, repo FROM ci_jobs WHERE id <> 'job-000000000000';
)sql"
                                                                      : R"sql(
INSERT INTO ci_jobs (id, owner_token_id, state, spec_json, sha, created_at_ms, pipeline_id, name, repo)
  SELECT 'job-' || lpad(to_hex(i), 12, '0'), owner_token_id, CASE i % 3 WHEN 0 THEN 'failed' ELSE 'passed' END,
         jsonb_set(spec_json::jsonb, '{repo}', to_jsonb('https://git.example.com/r' || (i % 4)))::text, sha, 1000 + i,
         'pipeline-' || lpad(to_hex(i), 12, '0'), name, 'https://git.example.com/r' || (i % 4)
  FROM generate_series(1, )sql" + last + R"sql() AS i, ci_jobs WHERE ci_jobs.id = 'job-000000000000';
INSERT INTO ci_pipelines (id, owner_token_id, state, spec_json, sha, created_at_ms, repo)
  SELECT pipeline_id, owner_token_id, state, spec_json, sha, created_at_ms, repo FROM ci_jobs
  WHERE id <> 'job-000000000000' ORDER BY seq;
)sql";
        ASSERT_TRUE(s.exec(copies).ok());
        // PostgreSQL plans by table statistics, which autovacuum gathers a while after a bulk
        // load: gathered now, as a store that has grown to 10,000 jobs has them.
        if (m_db->engine() == DbEngine::Postgres) {
            ASSERT_TRUE(s.exec("ANALYZE ci_jobs; ANALYZE ci_pipelines").ok());
        }
    }

    std::shared_ptr<Db> m_db;
    std::unique_ptr<DbStore> m_store;
    std::unique_ptr<TokenStore> m_tokens;
    std::unique_ptr<SessionStore> m_sessions;
    std::unique_ptr<ci::JobStore> m_job_store;
    std::unique_ptr<StoreJobs> m_jobs;
    NoSandboxes m_service;
    Metrics m_metrics{"tcg"};
    std::unique_ptr<HttpServer> m_server;
    std::thread m_thread;
    std::string m_admin, m_tenant;
};

TEST_P(Dashboard, ThePagesAreServedWithAStrictPolicyAndContentHashedFiles) {
    auto c = client();
    auto shell = c.Get("/ui/jobs/job-0123456789ab");
    ASSERT_TRUE(shell);
    EXPECT_EQ(shell->status, 200);
    EXPECT_EQ(shell->get_header_value("Content-Type"), "text/html; charset=utf-8");
    std::string csp = shell->get_header_value("Content-Security-Policy");
    EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
    EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
    EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos);
    EXPECT_EQ(shell->get_header_value("X-Content-Type-Options"), "nosniff");
    EXPECT_EQ(shell->get_header_value("Cache-Control"), "no-store");
    const std::string build = ui_assets().build;
    EXPECT_NE(shell->body.find("/ui/a/" + build + "/js/app.js"), std::string::npos);
    EXPECT_EQ(shell->body.find("{{BUILD}}"), std::string::npos);
    EXPECT_EQ(shell->body.find("<script>"), std::string::npos) << "no inline script";

    // Every file of ui/ is in the binary, byte for byte, with its type, hash and a long cache life.
    size_t files = 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(std::string(KILN_SOURCE_DIR) + "/ui")) {
        if (!entry.is_regular_file()) continue;
        std::string rel = std::filesystem::relative(entry.path(), std::string(KILN_SOURCE_DIR) + "/ui").string();
        ++files;
        auto r = c.Get("/ui/a/" + build + "/" + rel);
        ASSERT_TRUE(r);
        ASSERT_EQ(r->status, 200) << rel;
        ASSERT_TRUE(std::filesystem::file_size(entry.path()) == r->body.size()) << rel;
        EXPECT_EQ(r->get_header_value("ETag"), "\"" + sha256_hex(r->body) + "\"") << rel;
        EXPECT_NE(r->get_header_value("Cache-Control").find("immutable"), std::string::npos);
        std::string type = r->get_header_value("Content-Type");
        std::string expected = rel.ends_with(".js")    ? "text/javascript; charset=utf-8"
                               : rel.ends_with(".css") ? "text/css; charset=utf-8"
                               : rel.ends_with(".svg") ? "image/svg+xml"
                                                       : "text/html; charset=utf-8";
        EXPECT_EQ(type, expected) << rel;
        auto again = c.Get("/ui/a/" + build + "/" + rel, httplib::Headers{{"If-None-Match", r->get_header_value("ETag")}});
        ASSERT_TRUE(again);
        EXPECT_EQ(again->status, 304) << rel;
    }
    EXPECT_EQ(files, ui_assets().count);
    auto old_build = c.Get("/ui/a/0000000000000000/js/app.js");
    ASSERT_TRUE(old_build);
    EXPECT_EQ(old_build->status, 404);
    auto outside = c.Get("/ui/a/" + build + "/../../CMakeLists.txt");
    ASSERT_TRUE(outside);
    EXPECT_NE(outside->status, 200);
}

TEST_P(Dashboard, ASessionActsAsItsTokenUntilSignOut) {
    auto c = client();
    auto wrong = c.Post("/ui/session", httplib::Headers{{"Origin", origin()}}, json{{"token", "kiln_not-a-token"}}.dump(),
                        "application/json");
    ASSERT_TRUE(wrong);
    EXPECT_EQ(wrong->status, 401);
    EXPECT_TRUE(wrong->get_header_value("Set-Cookie").empty());

    Signed s = sign_in(m_admin);
    EXPECT_NE(s.set_cookie.find("HttpOnly"), std::string::npos);
    EXPECT_NE(s.set_cookie.find("SameSite=Strict"), std::string::npos);
    EXPECT_NE(s.set_cookie.find("Max-Age="), std::string::npos);
    EXPECT_NE(s.set_cookie.find("Secure"), std::string::npos) << "public_url is https";
    ASSERT_FALSE(s.csrf.empty());

    // Only hashes are stored.
    std::string id = s.cookie.substr(s.cookie.find('=') + 1);
    {
        auto db = m_db->session();
        auto st = db.prepare("SELECT id_sha256, token_sha256 FROM ui_sessions");
        ASSERT_TRUE(st.ok());
        ASSERT_TRUE(*st->step());
        EXPECT_EQ(st->column_text(0), sha256_hex(id));
        EXPECT_EQ(st->column_text(1), sha256_hex(m_admin));
    }

    auto who = c.Get("/v1/token", httplib::Headers{{"Cookie", s.cookie}});
    ASSERT_TRUE(who);
    EXPECT_EQ(who->status, 200) << who->body;
    EXPECT_EQ(json::parse(who->body)["name"], "alice");
    auto state = c.Get("/ui/session", httplib::Headers{{"Cookie", s.cookie}});
    ASSERT_TRUE(state);
    EXPECT_EQ(json::parse(state->body)["csrf"], s.csrf);

    // A state-changing call with the cookie: refused without the CSRF header, with a wrong one,
    // or from another origin; accepted with both right.
    const std::string cancel = "/v1/jobs/job-000000000000/cancel";
    insert_jobs(2);
    auto no_csrf = c.Post(cancel, httplib::Headers{{"Cookie", s.cookie}, {"Origin", origin()}}, "", "application/json");
    ASSERT_TRUE(no_csrf);
    EXPECT_EQ(no_csrf->status, 403) << no_csrf->body;
    auto bad_csrf = c.Post(cancel, httplib::Headers{{"Cookie", s.cookie}, {"Origin", origin()}, {"X-Kiln-CSRF", s.csrf + "0"}}, "",
                           "application/json");
    ASSERT_TRUE(bad_csrf);
    EXPECT_EQ(bad_csrf->status, 403);
    auto cross = c.Post(cancel, httplib::Headers{{"Cookie", s.cookie}, {"Origin", "https://evil.example"}, {"X-Kiln-CSRF", s.csrf}},
                        "", "application/json");
    ASSERT_TRUE(cross);
    EXPECT_EQ(cross->status, 403);
    auto fetch_site = c.Get("/v1/token", httplib::Headers{{"Cookie", s.cookie}, {"Sec-Fetch-Site", "cross-site"}});
    ASSERT_TRUE(fetch_site);
    EXPECT_EQ(fetch_site->status, 403);
    auto ok = c.Post(cancel, httplib::Headers{{"Cookie", s.cookie}, {"Origin", origin()}, {"X-Kiln-CSRF", s.csrf}}, "",
                     "application/json");
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 200) << ok->body;
    auto public_origin = c.Post(cancel, httplib::Headers{{"Cookie", s.cookie}, {"Origin", "https://ci.example.com"}, {"X-Kiln-CSRF", s.csrf}},
                                "", "application/json");
    ASSERT_TRUE(public_origin);
    EXPECT_EQ(public_origin->status, 200) << "public_url's origin is kilnd's own";

    // Sign-out: ends it on the server; the old cookie no longer works.
    auto out_no_csrf = c.Delete("/ui/session", httplib::Headers{{"Cookie", s.cookie}, {"Origin", origin()}});
    ASSERT_TRUE(out_no_csrf);
    EXPECT_EQ(out_no_csrf->status, 403);
    auto out = c.Delete("/ui/session", httplib::Headers{{"Cookie", s.cookie}, {"Origin", origin()}, {"X-Kiln-CSRF", s.csrf}});
    ASSERT_TRUE(out);
    EXPECT_EQ(out->status, 204);
    EXPECT_NE(out->get_header_value("Set-Cookie").find("Max-Age=0"), std::string::npos);
    auto after = c.Get("/v1/token", httplib::Headers{{"Cookie", s.cookie}});
    ASSERT_TRUE(after);
    EXPECT_EQ(after->status, 401);
    auto state_after = c.Get("/ui/session", httplib::Headers{{"Cookie", s.cookie}});
    ASSERT_TRUE(state_after);
    EXPECT_EQ(json::parse(state_after->body)["signed_in"], false);
}

TEST_P(Dashboard, SignInOnlyFromKilndsOwnPagesAndARevokedTokenEndsItsSessions) {
    auto c = client();
    auto cross = c.Post("/ui/session", httplib::Headers{{"Origin", "https://evil.example"}}, json{{"token", m_admin}}.dump(),
                        "application/json");
    ASSERT_TRUE(cross);
    EXPECT_EQ(cross->status, 403);

    Signed tenant = sign_in(m_tenant);
    auto scoped = c.Get("/v1/sandboxes", httplib::Headers{{"Cookie", tenant.cookie}});
    ASSERT_TRUE(scoped);
    EXPECT_EQ(scoped->status, 403) << "the session has its token's scopes, no more";
    auto jobs = c.Get("/v1/jobs", httplib::Headers{{"Cookie", tenant.cookie}});
    ASSERT_TRUE(jobs);
    EXPECT_EQ(jobs->status, 200);
    ASSERT_TRUE(m_tokens->revoke("carol").ok());
    auto revoked = c.Get("/v1/jobs", httplib::Headers{{"Cookie", tenant.cookie}});
    ASSERT_TRUE(revoked);
    EXPECT_EQ(revoked->status, 401);
}

INSTANTIATE_ENGINE_TESTS(Dashboard);

class SessionStoreEngines : public test::EngineTest {};

TEST_P(SessionStoreEngines, SessionsExpire) {
    auto db = open_kilnd_db(store_spec());
    ASSERT_TRUE(db.ok());
    DbStore store(*db);
    TokenStore tokens(store);
    auto token = tokens.create(TokenSpec{"alice", static_cast<ScopeSet>(Scope::Admin), {}});
    ASSERT_TRUE(token.ok());
    SessionStore sessions(*db, tokens, /*lifetime_ms=*/1000);
    auto old = sessions.create(token->token, now_unix_ms() - 5000);  // made 5 s ago: expired
    ASSERT_TRUE(old.ok());
    EXPECT_EQ(sessions.authenticate_session(old->id).error().code, ErrorCode::Unauthorized);
    auto fresh = sessions.create(token->token, now_unix_ms());
    ASSERT_TRUE(fresh.ok());
    auto caller = sessions.authenticate_session(fresh->id);
    ASSERT_TRUE(caller.ok());
    EXPECT_EQ(caller->caller.token_name, "alice");
    EXPECT_EQ(caller->csrf, fresh->csrf);
    EXPECT_FALSE(sessions.authenticate_session("kses_" + std::string(43, 'A')).ok());
    EXPECT_FALSE(sessions.authenticate_session("not-a-session").ok());
    EXPECT_FALSE(sessions.create("kiln_wrong", now_unix_ms()).ok());
}

INSTANTIATE_ENGINE_TESTS(SessionStoreEngines);

TEST_P(Dashboard, ListsPageFromTheStoreAndTheFirstPageOf10000JobsIsFast) {
    insert_jobs(10000);
    auto c = client();
    httplib::Headers auth{{"Authorization", "Bearer " + m_admin}};
    auto timed = [&](const std::string& path) {
        auto start = std::chrono::steady_clock::now();
        auto r = c.Get(path, auth);
        auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        EXPECT_TRUE(r);
        if (r) {
            EXPECT_EQ(r->status, 200) << r->body;
        }
        return std::make_pair(r ? json::parse(r->body) : json(), ms);
    };
    auto [jobs, jobs_ms] = timed("/v1/jobs?limit=50");
    EXPECT_LT(jobs_ms, 300) << "the first page of the jobs list";
    ASSERT_EQ(jobs["jobs"].size(), 50u);
    EXPECT_EQ(jobs["jobs"][0]["id"], "job-00000000270f") << "newest first (9999)";
    auto [pipes, pipes_ms] = timed("/v1/pipelines?limit=25");
    EXPECT_LT(pipes_ms, 300) << "the first page of the pipelines list";
    ASSERT_EQ(pipes["pipelines"].size(), 25u);
    std::printf("first page with 10,000 jobs: /v1/jobs?limit=50 %.1f ms, /v1/pipelines?limit=25 %.1f ms\n", jobs_ms, pipes_ms);

    // Walking the cursor: every job once, newest first, the last page's cursor null.
    std::set<std::string> seen;
    std::string cursor;
    std::string last_created = "~";
    int pages = 0;
    for (;;) {
        auto [page, ms] = timed("/v1/jobs?limit=1000" + (cursor.empty() ? "" : "&cursor=" + cursor));
        EXPECT_LT(ms, 1000);
        for (const auto& j : page["jobs"]) {
            EXPECT_TRUE(seen.insert(j["id"].get<std::string>()).second) << j["id"];
            std::string created = j["created_at"];
            EXPECT_LE(created, last_created) << "newest first";
            last_created = created;
        }
        ++pages;
        if (page["next_cursor"].is_null()) break;
        cursor = page["next_cursor"].get<std::string>();
        ASSERT_LT(pages, 20);
    }
    EXPECT_EQ(seen.size(), 10000u);
    EXPECT_EQ(pages, 10);

    // Filters are applied in the store, and page with them.
    auto [failed_r1, f_ms] = timed("/v1/jobs?limit=1000&state=failed&repo=https://git.example.com/r1");
    (void)f_ms;
    for (const auto& j : failed_r1["jobs"]) {
        EXPECT_EQ(j["state"], "failed");
        EXPECT_EQ(j["repo"], "https://git.example.com/r1");
    }
    EXPECT_EQ(failed_r1["jobs"].size(), 833u);  // i % 3 == 0 and i % 4 == 1, for i in 1..9999
    auto [pfail, p_ms] = timed("/v1/pipelines?limit=10&state=failed");
    (void)p_ms;
    ASSERT_EQ(pfail["pipelines"].size(), 10u);
    for (const auto& p : pfail["pipelines"]) {
        EXPECT_EQ(p["state"], "failed");
    }
    auto bad = c.Get("/v1/jobs?cursor=DROP%20TABLE", auth);
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 422);
}

}  // namespace

namespace {

using kiln::daemon::http::cookie_value;
using kiln::daemon::http::from_own_origin;
using kiln::daemon::http::Request;

Request request_with(std::initializer_list<std::pair<std::string, std::string>> headers) {
    Request r;
    r.method = "POST";
    for (const auto& [k, v] : headers) r.headers.emplace(k, v);
    return r;
}

TEST(UiSession, TheCookieIsFoundAmongOthersAndNotByPrefix) {
    EXPECT_EQ(cookie_value(request_with({{"Cookie", "a=1; kiln_session=kses_x;b=2"}}), "kiln_session"), "kses_x");
    EXPECT_EQ(cookie_value(request_with({{"Cookie", "a=1"}, {"cookie", " kiln_session = v "}}), "kiln_session"), "v");
    EXPECT_FALSE(cookie_value(request_with({{"Cookie", "xkiln_session=v; kiln_session_old=w"}}), "kiln_session"));
    EXPECT_FALSE(cookie_value(request_with({{"Cookie", "kiln_session"}}), "kiln_session"));
    EXPECT_FALSE(cookie_value(request_with({}), "kiln_session"));
}

TEST(UiSession, OwnOriginIsTheHostOrPublicUrl) {
    EXPECT_TRUE(from_own_origin(request_with({{"Host", "127.0.0.1:7070"}, {"Origin", "http://127.0.0.1:7070"}}), ""));
    EXPECT_TRUE(from_own_origin(request_with({{"Host", "CI.Example.com"}, {"Origin", "https://ci.example.com"}}), ""));
    EXPECT_FALSE(from_own_origin(request_with({{"Host", "127.0.0.1:7070"}, {"Origin", "http://127.0.0.1:7071"}}), ""));
    EXPECT_FALSE(from_own_origin(request_with({{"Host", "127.0.0.1:7070"}, {"Origin", "null"}}), ""));
    EXPECT_TRUE(from_own_origin(request_with({{"Host", "10.0.0.5:7070"}, {"Origin", "https://ci.example.com"}}),
                                "https://ci.example.com/"));
    EXPECT_FALSE(from_own_origin(request_with({{"Host", "10.0.0.5:7070"}, {"Origin", "https://ci.example.com.evil"}}),
                                 "https://ci.example.com"));
    EXPECT_FALSE(from_own_origin(request_with({{"Host", "h"}, {"Referer", "https://evil.example/page"}}), ""));
    EXPECT_TRUE(from_own_origin(request_with({{"Host", "h"}, {"Referer", "http://h/ui/jobs/x"}}), ""));
    EXPECT_FALSE(from_own_origin(request_with({{"Host", "h"}, {"Sec-Fetch-Site", "cross-site"}}), ""));
    EXPECT_TRUE(from_own_origin(request_with({{"Host", "h"}}), "")) << "a client that is not a browser names no origin";
}

}  // namespace
