// TokenStore: tokens are random, shown once, stored only as SHA-256, and checked exactly.
#include <gtest/gtest.h>

#include "base/file_util.h"
#include "base/sha256.h"
#include "daemon/auth/token_store.h"
#include "daemon/store/db_store.h"
#include "daemon_test_dir.h"
#include "pg_test_server.h"

using namespace kiln;
using namespace kiln::daemon;

TEST(DaemonAuth, Base64Url) {
    EXPECT_EQ(base64url(""), "");
    EXPECT_EQ(base64url("f"), "Zg");
    EXPECT_EQ(base64url("fo"), "Zm8");
    EXPECT_EQ(base64url("foo"), "Zm9v");
    EXPECT_EQ(base64url("\xfb\xff"), "-_8");
}

constexpr ScopeSet kAdminScope = static_cast<ScopeSet>(Scope::Admin);

class DaemonAuthStore : public test::EngineTest {};

TEST_P(DaemonAuthStore, CreateAuthenticateRevoke) {
    std::string db = store_spec();
    auto store = DbStore::open(db);
    ASSERT_TRUE(store.ok());
    TokenStore tokens(**store);
    auto a = tokens.create(TokenSpec{"ci", kAdminScope, {}});
    auto b = tokens.create(TokenSpec{"ci", kAdminScope, {}});
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->token.rfind("kiln_", 0), 0u);
    EXPECT_EQ(a->token.size(), 5u + 43u);
    EXPECT_NE(a->token, b->token);

    auto who = tokens.authenticate(a->token);
    ASSERT_TRUE(who.ok()) << who.error().to_string();
    EXPECT_EQ(who->token_id, a->id);
    EXPECT_EQ(who->token_name, "ci");

    std::string wrong = a->token;
    wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
    for (const std::string& bad : {wrong, std::string(""), std::string("kiln_"), a->token.substr(5), a->token + "x",
                                   std::string(10000, 'k'), std::string("kiln_\0x", 7)}) {
        auto r = tokens.authenticate(bad);
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.error().code, ErrorCode::Unauthorized);
        EXPECT_EQ(r.error().message.find(a->token), std::string::npos) << "the error never echoes a token";
    }

    ASSERT_TRUE(tokens.revoke(std::to_string(a->id)).ok());
    EXPECT_FALSE(tokens.authenticate(a->token).ok());
    EXPECT_TRUE(tokens.authenticate(b->token).ok());
    EXPECT_EQ(tokens.revoke("nobody").error().code, ErrorCode::NotFound);
    EXPECT_FALSE(tokens.create(TokenSpec{"", kAdminScope, {}}).ok());
    EXPECT_FALSE(tokens.create(TokenSpec{"bad name", kAdminScope, {}}).ok());

    // Only the hash reaches the disk (the SQLite file; PostgreSQL's rows are the same columns).
    (*store)->close();
    if (engine() != test::Engine::Sqlite) return;
    std::string bytes;
    for (const char* suffix : {"", "-wal", "-shm"}) {
        auto f = read_file(db + suffix);
        if (f.ok()) bytes += *f;
    }
    EXPECT_EQ(bytes.find(b->token), std::string::npos);
    EXPECT_NE(bytes.find(sha256_hex(b->token)), std::string::npos);
}

// Scopes and quotas are stored with the token and come back on every authentication; a token
// without scopes is refused; the config's defaults fill what the token does not set.
TEST_P(DaemonAuthStore, ScopesAndQuotasRoundTrip) {
    auto store = DbStore::open(store_spec());
    ASSERT_TRUE(store.ok());
    TokenQuota defaults;
    defaults.sandboxes = 64;
    defaults.snapshots = 100;
    TokenStore tokens(**store, defaults);
    auto scopes = parse_scope_list("sandboxes, ci:submit");
    ASSERT_TRUE(scopes.ok());
    auto quota = parse_quota_list("sandboxes=2,queued_jobs=5");
    ASSERT_TRUE(quota.ok());
    auto t = tokens.create(TokenSpec{"team-a", *scopes, *quota});
    ASSERT_TRUE(t.ok()) << t.error().to_string();
    auto who = tokens.authenticate(t->token);
    ASSERT_TRUE(who.ok());
    EXPECT_TRUE(who->has(Scope::Sandboxes));
    EXPECT_TRUE(who->has(Scope::CiSubmit));
    EXPECT_FALSE(who->has(Scope::CiTrusted));
    EXPECT_FALSE(who->has(Scope::CiRead));
    EXPECT_FALSE(who->is_admin());
    EXPECT_FALSE(who->may_touch(who->token_id + 1));
    EXPECT_EQ(who->quota.sandboxes, 2);
    EXPECT_EQ(who->quota.queued_jobs, 5);
    EXPECT_EQ(who->quota.snapshots, 100) << "unset: the default";
    EXPECT_FALSE(who->quota.memory_mib.has_value()) << "unset everywhere: unlimited";
    EXPECT_EQ(tokens.create(TokenSpec{"none", 0, {}}).error().code, ErrorCode::InvalidArgument);

    auto admin = tokens.create(TokenSpec{"root", kAdminScope, {}});
    auto as_admin = tokens.authenticate(admin->token);
    ASSERT_TRUE(as_admin.ok());
    for (Scope s : kAllScopes) EXPECT_TRUE(as_admin->has(s)) << scope_name(s);
    EXPECT_TRUE(as_admin->may_touch(who->token_id));
}

INSTANTIATE_ENGINE_TESTS(DaemonAuthStore);

TEST(DaemonAuth, ScopeAndQuotaTextIsChecked) {
    EXPECT_EQ(scope_list(*parse_scope_list("ci:read,admin")), "admin,ci:read");
    for (const char* bad : {"", "admin,", "root", "ci:submit,ci:submit", "sandboxes;admin"})
        EXPECT_FALSE(parse_scope_list(bad).ok()) << bad;
    for (const char* bad : {"sandboxes", "sandboxes=-1", "sandboxes=1x", "cpu=4", "=3"})
        EXPECT_FALSE(parse_quota_list(bad).ok()) << bad;
    auto q = parse_quota_list("lifetime_seconds=3600, snapshot_mib=0");
    ASSERT_TRUE(q.ok());
    auto back = parse_quota_json(quota_json(*q));
    EXPECT_EQ(back.lifetime_seconds, 3600);
    EXPECT_EQ(back.snapshot_mib, 0);
    EXPECT_FALSE(back.sandboxes.has_value());
    EXPECT_FALSE(parse_quota_json("not json").sandboxes.has_value());
}
