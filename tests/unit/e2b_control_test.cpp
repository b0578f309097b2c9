// The E2B listener's control-plane pieces that need no VM: E2B's create body in Kiln's terms, list
// queries and paging, envd access tokens, and the e2b_ form of Kiln tokens.
#include <gtest/gtest.h>

#include <cctype>

#include "daemon/auth/token_store.h"
#include "daemon/store/db_store.h"
#include "daemon_test_dir.h"
#include "kilnd/e2b/access_tokens.h"
#include "kilnd/e2b/list_query.h"
#include "kilnd/e2b/sandbox_json.h"

using namespace kiln;
using namespace kiln::daemon;
using namespace kiln::daemon::e2b;

TEST(E2bCreateBody, MapsE2bFieldsToKilnOnes) {
    auto r = parse_new_sandbox(R"({"templateID":"base","timeout":300,"metadata":{"a":"b"},"envVars":{"X":"1"},
                                   "allow_internet_access":false,"mcp":null,"autoPause":false})");
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r->template_id, "base");
    EXPECT_EQ(r->ttl_seconds, 300);
    EXPECT_EQ(r->metadata, (Labels{{"a", "b"}}));
    EXPECT_EQ(r->env, (Labels{{"X", "1"}}));
    ASSERT_TRUE(r->network);
    EXPECT_EQ(r->network->mode, net::NetworkMode::None);

    auto defaults = parse_new_sandbox(R"({"templateID":"tiny"})");
    ASSERT_TRUE(defaults.ok());
    EXPECT_EQ(defaults->ttl_seconds, kDefaultTimeoutSeconds) << "E2B's own default timeout";
    EXPECT_FALSE(defaults->network) << "no network field: kilnd's configured default";

    EXPECT_FALSE(defaults->auto_pause);
    auto pausing = parse_new_sandbox(R"({"templateID":"tiny","autoPause":true,"autoPauseMemory":true,"autoResume":{"enabled":false}})");
    ASSERT_TRUE(pausing.ok()) << pausing.error().to_string();
    EXPECT_TRUE(pausing->auto_pause) << "onTimeout: 'pause'";

    auto open = parse_new_sandbox(R"({"templateID":"tiny","allow_internet_access":true})");
    ASSERT_TRUE(open.ok());
    EXPECT_EQ(open->network->mode, net::NetworkMode::Open);

    auto allowlist = parse_new_sandbox(R"({"templateID":"tiny","network":{"denyOut":["0.0.0.0/0"],"allowOut":["192.0.2.7:443","10.0.0.0/8"]}})");
    ASSERT_TRUE(allowlist.ok()) << allowlist.error().to_string();
    EXPECT_EQ(allowlist->network->mode, net::NetworkMode::Allowlist);
    ASSERT_EQ(allowlist->network->allow.size(), 2u);
    EXPECT_EQ(allowlist->network->allow[0].to_string(), "192.0.2.7:443");

    auto deny_all = parse_new_sandbox(R"({"templateID":"tiny","network":{"denyOut":["0.0.0.0/0"]}})");
    ASSERT_TRUE(deny_all.ok());
    EXPECT_EQ(deny_all->network->mode, net::NetworkMode::None);
}

TEST(E2bCreateBody, RefusesWhatKilnCannotDoAndMalformedInput) {
    struct Case {
        const char* body;
        ErrorCode code;
    };
    for (const Case& c : std::initializer_list<Case>{
             {"{", ErrorCode::MalformedBody},
             {"", ErrorCode::MalformedBody},
             {"[]", ErrorCode::InvalidArgument},
             {"{}", ErrorCode::InvalidArgument},
             {R"({"templateID":""})", ErrorCode::InvalidArgument},
             {R"({"templateID":5})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","timeout":1.5})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","timeout":"60"})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","metadata":{"a":1}})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","metadata":["a"]})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","envVars":{"A":null}})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","allow_internet_access":"yes"})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","network":{"denyOut":["10.0.0.0/8"]}})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","network":{"denyOut":["0.0.0.0/0"],"allowOut":["example.com"]}})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","network":{"allowOut":"1.2.3.4"}})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","allow_internet_access":false,"network":{"denyOut":["0.0.0.0/0"],"allowOut":["1.2.3.4"]}})",
              ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","autoPause":true,"autoPauseMemory":false})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","autoPause":true,"autoResume":{"enabled":true}})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","mcp":{"x":{}}})", ErrorCode::InvalidArgument},
             {R"({"templateID":"tiny","volumeMounts":[{"name":"v","path":"/v"}]})", ErrorCode::InvalidArgument},
         }) {
        auto r = parse_new_sandbox(c.body);
        ASSERT_FALSE(r.ok()) << c.body;
        EXPECT_EQ(r.error().code, c.code) << c.body << ": " << r.error().to_string();
    }
}

TEST(E2bRender, ShapesTheSdkReads) {
    SandboxInfo info = SandboxInfo::from_row(SandboxState::Running);
    info.id = "sb-0123456789ab";
    info.template_id = "base";
    info.created_at_ms = 1'700'000'000'000;
    info.expires_at_ms = 1'700'000'015'000;
    info.metadata = {{"k", "v"}};
    auto created = render_sandbox(info, "tok");
    EXPECT_EQ(created["sandboxID"], "sb-0123456789ab");
    EXPECT_EQ(created["envdAccessToken"], "tok");
    EXPECT_EQ(created["envdVersion"], kEnvdVersion);
    auto listed = render_listed_sandbox(info);
    EXPECT_EQ(listed["state"], "running");
    EXPECT_EQ(listed["startedAt"], "2023-11-14T22:13:20.000Z");
    EXPECT_EQ(listed["endAt"], "2023-11-14T22:13:35.000Z");
    EXPECT_FALSE(listed.contains("envdAccessToken")) << "a list never shows access tokens";
    EXPECT_EQ(render_sandbox_detail(info, "tok")["envdAccessToken"], "tok");
}

namespace {
SandboxInfo sandbox(const std::string& id, int64_t created_at_ms, SandboxState state = SandboxState::Running) {
    SandboxInfo s = SandboxInfo::from_row(state);
    s.id = id;
    s.created_at_ms = created_at_ms;
    return s;
}

http::Request request_with(const std::string& query) {
    http::Request req;
    req.params = http::parse_query(query);
    return req;
}
}  // namespace

TEST(E2bList, ParsesTheSdksQuery) {
    // What E2B's SDK sends for metadata {app: "my app", k: "v"}: each pair percent-encoded, joined
    // as a query string, and that string percent-encoded again as one parameter.
    auto q = parse_list_query(request_with("metadata=app%3Dmy%252520app%26k%3Dv&state=running,paused&limit=2&order=asc"));
    ASSERT_TRUE(q.ok()) << q.error().to_string();
    EXPECT_EQ(q->metadata, (Labels{{"app", "my app"}, {"k", "v"}}));
    EXPECT_TRUE(q->running && q->paused);
    EXPECT_EQ(q->limit, 2u);
    EXPECT_FALSE(q->newest_first);

    auto paused_only = parse_list_query(request_with("state=paused"));
    ASSERT_TRUE(paused_only.ok());
    EXPECT_FALSE(paused_only->running);
    EXPECT_TRUE(paused_only->paused);

    for (const char* bad : {"state=sleeping", "limit=0", "limit=101", "limit=x", "order=up", "nextToken=abc",
                            "nextToken=12.SB", "nextToken=.sb-1", "metadata=%3Dv"}) {
        auto r = parse_list_query(request_with(bad));
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << bad;
    }
}

TEST(E2bList, PagesNewestFirstAndSurvivesAKilledCursor) {
    std::vector<SandboxInfo> all = {sandbox("sb-aaaaaaaaaaaa", 1000), sandbox("sb-bbbbbbbbbbbb", 3000),
                                    sandbox("sb-cccccccccccc", 2000), sandbox("sb-dddddddddddd", 2000),
                                    sandbox("sb-eeeeeeeeeeee", 4000, SandboxState::Deleted)};
    ListQuery q;
    q.limit = 2;
    auto first = page_of(all, q);
    ASSERT_EQ(first.items.size(), 2u);
    EXPECT_EQ(first.items[0].id, "sb-bbbbbbbbbbbb");
    EXPECT_EQ(first.items[1].id, "sb-dddddddddddd") << "same time: the larger id first";
    ASSERT_FALSE(first.next_token.empty());

    q.after = *decode_cursor(first.next_token);
    // The cursor's own sandbox is gone by the next call: the page still starts after it.
    std::erase_if(all, [](const SandboxInfo& s) { return s.id == "sb-dddddddddddd"; });
    auto second = page_of(all, q);
    ASSERT_EQ(second.items.size(), 2u);
    EXPECT_EQ(second.items[0].id, "sb-cccccccccccc");
    EXPECT_EQ(second.items[1].id, "sb-aaaaaaaaaaaa");
    EXPECT_TRUE(second.next_token.empty()) << "nothing after: the last page";

    ListQuery none;
    none.running = false;
    EXPECT_TRUE(page_of(all, none).items.empty());

    // Pausing and paused are E2B's "paused"; resuming is "running" again; deleting is gone.
    std::vector<SandboxInfo> states = {sandbox("sb-111111111111", 1, SandboxState::Paused), sandbox("sb-222222222222", 2, SandboxState::Pausing),
                                       sandbox("sb-333333333333", 3, SandboxState::Resuming), sandbox("sb-444444444444", 4, SandboxState::Deleting)};
    ListQuery paused_only;
    paused_only.running = false;
    auto paused = page_of(states, paused_only);
    ASSERT_EQ(paused.items.size(), 2u);
    EXPECT_EQ(std::string(e2b_state(paused.items[0].state())), "paused");
    ListQuery running_only;
    running_only.paused = false;
    auto running = page_of(states, running_only);
    ASSERT_EQ(running.items.size(), 1u);
    EXPECT_EQ(running.items[0].id, "sb-333333333333");
}

TEST(E2bAccessTokens, OnePerSandboxAndStableAcrossOpens) {
    test::TempDir dir;
    auto a = AccessTokens::open(dir.path());
    ASSERT_TRUE(a.ok()) << a.error().to_string();
    auto again = AccessTokens::open(dir.path());
    ASSERT_TRUE(again.ok());
    const std::string token = a->token_for("sb-0123456789ab");
    EXPECT_EQ(token.size(), 64u);
    EXPECT_EQ(again->token_for("sb-0123456789ab"), token) << "the key is kept in the data dir";
    EXPECT_NE(a->token_for("sb-0123456789ac"), token);
    EXPECT_TRUE(a->check("sb-0123456789ab", token));
    EXPECT_FALSE(a->check("sb-0123456789ac", token));
    EXPECT_FALSE(a->check("sb-0123456789ab", token.substr(0, 63)));
    EXPECT_FALSE(a->check("sb-0123456789ab", ""));
    EXPECT_NE(AccessTokens("another key").token_for("sb-0123456789ab"), token);
}

TEST(E2bApiKeys, TheE2bFormIsAKilnToken) {
    test::TempDir dir;
    auto store = DbStore::open(dir.path() + "/kilnd.db");
    ASSERT_TRUE(store.ok());
    TokenStore tokens(**store);
    auto key = tokens.create(TokenSpec{"e2b", static_cast<ScopeSet>(Scope::Sandboxes), {}}, TokenForm::E2b);
    ASSERT_TRUE(key.ok()) << key.error().to_string();
    ASSERT_EQ(key->token.size(), 4u + kE2bTokenHexDigits);
    EXPECT_EQ(key->token.rfind("e2b_", 0), 0u);
    EXPECT_EQ(key->token.find_first_not_of("0123456789abcdef", 4), std::string::npos);
    auto who = tokens.authenticate(key->token);
    ASSERT_TRUE(who.ok());
    EXPECT_EQ(who->token_id, key->id);

    std::string upper = key->token;
    for (size_t i = 4; i < upper.size(); ++i) upper[i] = static_cast<char>(std::toupper(upper[i]));
    for (const std::string& bad : {upper, key->token + "0", key->token.substr(0, 43), std::string("e2b_") + std::string(40, 'g')})
        if (bad != key->token) {
            EXPECT_FALSE(tokens.authenticate(bad).ok()) << bad;
        }
    EXPECT_FALSE(token_shaped("e2b_"));
    EXPECT_TRUE(token_shaped("kiln_abc"));
}
