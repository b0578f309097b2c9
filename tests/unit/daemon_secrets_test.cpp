// Secrets from files: read_secret_file's checks (owner, mode, type, size) on real files, and
// load_secrets' sources (the *_file keys, ci_secrets_dir, $CREDENTIALS_DIRECTORY, the deprecated
// environment) and its refusal of a secret given twice.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>

#include "base/file_util.h"
#include "base/secret_file.h"
#include "daemon/secrets.h"
#include "daemon_test_dir.h"

using namespace kiln;
using namespace kiln::daemon;

namespace {

std::string secret_file(const std::string& path, const std::string& content, unsigned mode = 0600) {
    EXPECT_TRUE(write_file(path, content, mode).ok());
    ::chmod(path.c_str(), mode);  // write_file's mode goes through the umask
    return path;
}

// `environ`-style entries that stay alive for the test.
struct Env {
    std::vector<std::string> entries;
    std::vector<char*> pointers;
    char** get() {
        pointers.clear();
        for (auto& e : entries) pointers.push_back(e.data());
        pointers.push_back(nullptr);
        return pointers.data();
    }
};

}  // namespace

TEST(SecretFile, ReadsTheValueWithoutItsTrailingNewline) {
    test::TempDir dir;
    EXPECT_EQ(*read_secret_file(secret_file(dir.path() + "/a", "s3cret\n")), "s3cret");
    EXPECT_EQ(*read_secret_file(secret_file(dir.path() + "/b", "s3cret\r\n", 0400)), "s3cret");
    EXPECT_EQ(*read_secret_file(secret_file(dir.path() + "/c", "two\nlines")), "two\nlines");
}

TEST(SecretFile, RefusesWhatOthersCouldReadOrChange) {
    test::TempDir dir;
    for (unsigned mode : {0644u, 0640u, 0604u, 0620u, 0602u}) {
        auto r = read_secret_file(secret_file(dir.path() + "/loose", "s3cret-value", mode));
        ASSERT_FALSE(r.ok()) << std::oct << mode;
        EXPECT_EQ(r.error().code, ErrorCode::PermissionDenied);
        EXPECT_NE(r.error().message.find("chmod 600"), std::string::npos) << r.error().message;
        EXPECT_NE(r.error().message.find(dir.path() + "/loose"), std::string::npos) << r.error().message;
        EXPECT_EQ(r.error().message.find("s3cret-value"), std::string::npos) << "the value leaked into the error";
    }
    if (::geteuid() == 0) {  // only root can give a file away
        std::string other = secret_file(dir.path() + "/other", "s3cret");
        ASSERT_EQ(::chown(other.c_str(), 65534, 65534), 0);
        auto r = read_secret_file(other);
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.error().code, ErrorCode::PermissionDenied);
        EXPECT_NE(r.error().message.find("owned by uid 65534"), std::string::npos) << r.error().message;
    }
    std::string fifo = dir.path() + "/fifo";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    auto from_fifo = read_secret_file(fifo);  // must not block waiting for a writer
    ASSERT_FALSE(from_fifo.ok());
    EXPECT_NE(from_fifo.error().message.find("not a regular file"), std::string::npos);
    EXPECT_FALSE(read_secret_file(secret_file(dir.path() + "/empty", "\n")).ok());
    EXPECT_EQ(read_secret_file(secret_file(dir.path() + "/big", std::string(100, 'x')), 99).error().code, ErrorCode::TooLarge);
    EXPECT_EQ(read_secret_file(dir.path() + "/missing").error().code, ErrorCode::NotFound);
}

TEST(LoadSecrets, FromTheFileKeys) {
    test::TempDir dir;
    DaemonConfig config;
    config.github_webhook_secret_file = secret_file(dir.path() + "/hook", "hook-secret\n");
    config.github_token_file = secret_file(dir.path() + "/token", "gh-token\n");
    ASSERT_EQ(::mkdir((dir.path() + "/ci").c_str(), 0700), 0);
    config.ci_secrets_dir = dir.path() + "/ci";
    secret_file(config.ci_secrets_dir + "/DEPLOY_KEY", "deploy\n");
    secret_file(config.ci_secrets_dir + "/NPM_TOKEN", "npm");
    secret_file(config.ci_secrets_dir + "/.hidden", "ignored");
    auto s = load_secrets(config, nullptr);
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    EXPECT_EQ(s->github_webhook_secret, "hook-secret");
    EXPECT_EQ(s->github_token, "gh-token");
    EXPECT_EQ(s->ci, (std::map<std::string, std::string>{{"DEPLOY_KEY", "deploy"}, {"NPM_TOKEN", "npm"}}));
    EXPECT_TRUE(s->from_environment.empty());
    EXPECT_EQ(s->sources.at("github_token"), "github_token_file " + config.github_token_file);

    // One loose file in the folder refuses the start, naming the file.
    secret_file(config.ci_secrets_dir + "/LOOSE", "x", 0644);
    auto loose = load_secrets(config, nullptr);
    ASSERT_FALSE(loose.ok());
    EXPECT_NE(loose.error().message.find(config.ci_secrets_dir + "/LOOSE"), std::string::npos) << loose.error().message;
    ASSERT_EQ(::unlink((config.ci_secrets_dir + "/LOOSE").c_str()), 0);
    // A name that cannot be a variable.
    secret_file(config.ci_secrets_dir + "/bad-name", "x");
    auto bad_name = load_secrets(config, nullptr);
    ASSERT_FALSE(bad_name.ok());
    EXPECT_NE(bad_name.error().message.find("not a CI secret name"), std::string::npos) << bad_name.error().message;
    ASSERT_EQ(::unlink((config.ci_secrets_dir + "/bad-name").c_str()), 0);
    // A folder others can write into.
    ASSERT_EQ(::chmod(config.ci_secrets_dir.c_str(), 0777), 0);
    auto open_dir = load_secrets(config, nullptr);
    ASSERT_FALSE(open_dir.ok());
    EXPECT_NE(open_dir.error().message.find("chmod 700"), std::string::npos) << open_dir.error().message;
}

TEST(LoadSecrets, FromTheCredentialsDirectory) {
    test::TempDir dir;
    std::string creds = dir.path() + "/creds";
    ASSERT_EQ(::mkdir(creds.c_str(), 0500 | 0200), 0);
    secret_file(creds + "/github_webhook_secret", "from-credential", 0400);
    secret_file(creds + "/ci_secret_DEPLOY_KEY", "deploy-credential", 0400);
    secret_file(creds + "/some_other_service_credential", "not ours", 0400);
    Env env{{"CREDENTIALS_DIRECTORY=" + creds}};
    auto s = load_secrets(DaemonConfig{}, env.get());
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    EXPECT_EQ(s->github_webhook_secret, "from-credential");
    EXPECT_TRUE(s->github_token.empty());
    EXPECT_EQ(s->ci, (std::map<std::string, std::string>{{"DEPLOY_KEY", "deploy-credential"}}));

    // An explicit file key wins over the credential (which is only a default place to look).
    DaemonConfig config;
    config.github_webhook_secret_file = secret_file(dir.path() + "/hook", "from-file");
    EXPECT_EQ(load_secrets(config, env.get())->github_webhook_secret, "from-file");
}

TEST(LoadSecrets, TheEnvironmentStillWorksButIsMarkedDeprecated) {
    Env env{{"KILN_CI_SECRET_DEPLOY_KEY=from-env", "KILN_GITHUB_WEBHOOK_SECRET=hook-env", "KILN_CI_SECRET_=ignored"}};
    auto config = load_config("", env.get(), {});
    ASSERT_TRUE(config.ok());
    auto s = load_secrets(*config, env.get());
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    EXPECT_EQ(s->ci, (std::map<std::string, std::string>{{"DEPLOY_KEY", "from-env"}}));
    EXPECT_EQ(s->github_webhook_secret, "hook-env");
    EXPECT_EQ(s->from_environment, (std::vector<std::string>{"KILN_GITHUB_WEBHOOK_SECRET", "KILN_CI_SECRET_DEPLOY_KEY"}));
}

TEST(LoadSecrets, ASecretGivenTwiceIsRefusedNamingBothSources) {
    test::TempDir dir;
    DaemonConfig config;
    config.github_token = "inline-token";
    config.github_token_file = secret_file(dir.path() + "/token", "file-token");
    auto both = load_secrets(config, nullptr);
    ASSERT_FALSE(both.ok());
    EXPECT_NE(both.error().message.find("github_token_file " + config.github_token_file), std::string::npos) << both.error().message;
    EXPECT_EQ(both.error().message.find("file-token"), std::string::npos);
    EXPECT_EQ(both.error().message.find("inline-token"), std::string::npos);

    DaemonConfig ci;
    ASSERT_EQ(::mkdir((dir.path() + "/ci").c_str(), 0700), 0);
    ci.ci_secrets_dir = dir.path() + "/ci";
    secret_file(ci.ci_secrets_dir + "/DEPLOY_KEY", "from-dir");
    Env env{{"KILN_CI_SECRET_DEPLOY_KEY=from-env"}};
    auto twice = load_secrets(ci, env.get());
    ASSERT_FALSE(twice.ok());
    EXPECT_NE(twice.error().message.find("KILN_CI_SECRET_DEPLOY_KEY"), std::string::npos) << twice.error().message;
    EXPECT_NE(twice.error().message.find(ci.ci_secrets_dir + "/DEPLOY_KEY"), std::string::npos) << twice.error().message;
}

TEST(LoadSecrets, FileKeysMustBeAbsolute) {
    for (const char* key : {"github_webhook_secret_file", "github_token_file", "ci_secrets_dir"}) {
        auto r = load_config("", nullptr, {{key, "relative/path"}});
        ASSERT_FALSE(r.ok()) << key;
        EXPECT_NE(r.error().message.find(key), std::string::npos);
    }
}

TEST(LoadSecrets, PerRepositoryWebhookSecrets) {
    test::TempDir dir;
    const std::string root = dir.path() + "/hooks";
    ASSERT_TRUE(make_dirs(root + "/Acme", 0700).ok());
    ::chmod(root.c_str(), 0700);
    secret_file(root + "/Acme/App", "app-secret\n");
    DaemonConfig config;
    config.github_webhook_secrets_dir = root;
    Env env;
    auto loaded = load_secrets(config, env.get());
    ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
    EXPECT_EQ(loaded->github_repo_webhook_secrets, (std::map<std::string, std::string>{{"acme/app", "app-secret"}}));
    EXPECT_EQ(loaded->sources.at("webhook secret of acme/app"), "github_webhook_secrets_dir file " + root + "/Acme/App");
    // A loose owner folder or file stops kilnd, naming it.
    ::chmod((root + "/Acme").c_str(), 0777);
    auto loose = load_secrets(config, env.get());
    ASSERT_FALSE(loose.ok());
    EXPECT_NE(loose.error().message.find(root + "/Acme"), std::string::npos) << loose.error().message;
}

TEST(LoadSecrets, TenancyConfigKeys) {
    DaemonConfig config;
    EXPECT_TRUE(apply_config_value(config, "ci_secrets_policy", "/etc/kiln/ci-policy").ok());
    EXPECT_EQ(config.ci_secrets_policy, "/etc/kiln/ci-policy");
    EXPECT_FALSE(apply_config_value(config, "ci_secrets_policy", "relative").ok());
    EXPECT_TRUE(apply_config_value(config, "github_webhook_secrets_dir", "/etc/kiln/hooks").ok());
    EXPECT_TRUE(apply_config_value(config, "github_repos", "acme/app, acme/*,other/x").ok());
    EXPECT_EQ(config.github_repos, "acme/app, acme/*,other/x");
    for (const char* bad : {"acme", "acme/app/x", "/app", "acme/"}) {
        auto st = apply_config_value(config, "github_repos", bad);
        ASSERT_FALSE(st.ok()) << bad;
        EXPECT_NE(st.error().message.find("github_repos"), std::string::npos) << st.error().message;
    }
}
