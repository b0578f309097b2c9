// TokenStore: tokens are random, shown once, stored only as SHA-256, and checked exactly.
#include <gtest/gtest.h>

#include "base/file_util.h"
#include "base/sha256.h"
#include "daemon/auth/token_store.h"
#include "daemon/store/sqlite_store.h"
#include "daemon_test_dir.h"

using namespace kiln;
using namespace kiln::daemon;

TEST(DaemonAuth, Base64Url) {
    EXPECT_EQ(base64url(""), "");
    EXPECT_EQ(base64url("f"), "Zg");
    EXPECT_EQ(base64url("fo"), "Zm8");
    EXPECT_EQ(base64url("foo"), "Zm9v");
    EXPECT_EQ(base64url("\xfb\xff"), "-_8");
}

TEST(DaemonAuth, CreateAuthenticateRevoke) {
    test::TempDir dir;
    std::string db = dir.path() + "/kilnd.db";
    auto store = SqliteStore::open(db);
    ASSERT_TRUE(store.ok());
    TokenStore tokens(**store);
    auto a = tokens.create("ci");
    auto b = tokens.create("ci");
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
    EXPECT_FALSE(tokens.create("").ok());
    EXPECT_FALSE(tokens.create("bad name").ok());

    // Only the hash reaches the disk.
    (*store)->close();
    std::string bytes;
    for (const char* suffix : {"", "-wal", "-shm"}) {
        auto f = read_file(db + suffix);
        if (f.ok()) bytes += *f;
    }
    EXPECT_EQ(bytes.find(b->token), std::string::npos);
    EXPECT_NE(bytes.find(sha256_hex(b->token)), std::string::npos);
}
