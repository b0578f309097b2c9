// What a job of one repository may take from kilnd (docs/tenants-ci.md): the canonical repository,
// the branch kilnd knows, the secret policy, and the forms of a secret a job's log masks.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "ci/jobs/canonical_repo.h"
#include "ci/jobs/job_log.h"
#include "ci/jobs/secret_forms.h"
#include "ci/jobs/secret_policy.h"
#include "daemon_test_dir.h"

namespace kiln::ci {
namespace {

TEST(CanonicalRepo, OneNamePerRepository) {
    for (const char* url : {"https://github.com/acme/app", "https://github.com/acme/app.git", "https://GitHub.com/Acme/App.git/",
                            "https://user:ghp_x@github.com:443/acme/app.git", "http://github.com:80//acme//app",
                            "git@github.com:acme/app.git", "ssh://git@github.com/acme/app", "ssh://git@github.com:22/acme/app.git",
                            "git://github.com/acme/app"})
        EXPECT_EQ(canonical_repo_url(url), "github.com/acme/app") << url;
    EXPECT_EQ(canonical_repo_url("https://git.example.com:8443/team/sub/tool.git"), "git.example.com:8443/team/sub/tool");
    EXPECT_EQ(canonical_repo_url("/srv/git/App/"), "/srv/git/App");
    EXPECT_EQ(canonical_repo_url("/srv//git/app.git"), "/srv/git/app.git");  // a local folder is its own name
    EXPECT_EQ(canonical_repo_url("file:///srv/git/app"), "/srv/git/app");
}

TEST(CanonicalRepo, RefusesWhatCouldNameTwoRepositories) {
    for (const char* url : {"", "relative/path", "https://github.com/acme/evil/../app", "/srv/git/./app",
                            "https://github.com/acme/%61pp", "https://github.com/acme/app\n", "https://github.com",
                            "https://github.com/", "https://github.com/acme\\app", ":acme/app", "git@github.com:"})
        EXPECT_EQ(canonical_repo_url(url), "") << url;
}

TEST(CanonicalRepo, GithubJobsAreTheirWebhooksRepository) {
    JobSpec spec;
    spec.source = "github";
    spec.repo = "https://github.com/Acme/App.git";
    spec.labels["github_repo"] = "Acme/App";
    EXPECT_EQ(canonical_repository(spec), "github.com/acme/app");
    spec.repo = "https://ghe.example.com/Acme/App.git";
    EXPECT_EQ(canonical_repository(spec), "ghe.example.com/acme/app");
    spec.repo = "https://ghe.example.com/mallory/elsewhere.git";  // the signed name counts, not the URL
    EXPECT_EQ(canonical_repository(spec), "ghe.example.com/acme/app");
    spec.repo = "/srv/mirror/app";
    EXPECT_EQ(canonical_repository(spec), "github.com/acme/app");
    spec.labels["github_repo"] = "../x";
    EXPECT_EQ(canonical_repository(spec), "");
    spec.labels.erase("github_repo");
    EXPECT_EQ(canonical_repository(spec), "");
    JobSpec api;
    api.repo = "git@github.com:acme/app.git";
    EXPECT_EQ(canonical_repository(api), "github.com/acme/app");
}

TEST(CanonicalRepo, BranchOnlyWhereKilndKnowsIt) {
    JobSpec push;
    push.source = "github";
    push.labels = {{"github_event", "push"}, {"github_ref", "refs/heads/main"}};
    EXPECT_EQ(job_branch(push), "main");
    push.labels["github_ref"] = "refs/tags/main";
    EXPECT_EQ(job_branch(push), "");
    JobSpec pr;
    pr.source = "github";
    pr.labels = {{"github_event", "pull_request"}, {"github_ref", "feature/x"}};
    EXPECT_EQ(job_branch(pr), "feature/x");
    JobSpec api;  // resolved by kilnd from ref (sha stays empty in the spec)
    api.ref = "refs/heads/release/1";
    EXPECT_EQ(job_branch(api), "release/1");
    api.ref = "main";
    EXPECT_EQ(job_branch(api), "main");
    api.ref = "HEAD";
    EXPECT_EQ(job_branch(api), "");
    api.ref = "main";
    api.sha = std::string(40, 'a');  // a commit given by sha is on no branch kilnd knows of
    EXPECT_EQ(job_branch(api), "");
}

TEST(SecretPolicy, RepositoriesBranchesAndUnscopedSecrets) {
    auto policy = SecretPolicy::parse(
        "# comment\n"
        "DEPLOY_KEY github.com/acme/app branches=main,release/*   # deploys from main only\n"
        "NPM_TOKEN  acme/app https://github.com/acme/lib.git\n"
        "NPM_TOKEN  /srv/git/tools\n"
        "SHARED     github.com/acme/*\n"
        "OWNER      other/*\n"
        "ANYWHERE   *\n");
    ASSERT_TRUE(policy.ok()) << policy.error().to_string();
    auto allowed = [&](const char* name, const char* repo, const char* branch) {
        return policy->decide(name, repo, branch).allowed;
    };
    EXPECT_TRUE(allowed("DEPLOY_KEY", "github.com/acme/app", "main"));
    EXPECT_TRUE(allowed("DEPLOY_KEY", "github.com/acme/app", "release/2"));
    EXPECT_FALSE(allowed("DEPLOY_KEY", "github.com/acme/app", "feature"));
    EXPECT_FALSE(allowed("DEPLOY_KEY", "github.com/acme/app", ""));
    EXPECT_FALSE(allowed("DEPLOY_KEY", "github.com/acme/lib", "main"));
    EXPECT_TRUE(allowed("NPM_TOKEN", "github.com/acme/lib", ""));
    EXPECT_TRUE(allowed("NPM_TOKEN", "/srv/git/tools", ""));
    EXPECT_FALSE(allowed("NPM_TOKEN", "/srv/git/tools2", ""));
    EXPECT_TRUE(allowed("SHARED", "github.com/acme/anything", ""));
    EXPECT_FALSE(allowed("SHARED", "github.com/acmex/app", ""));
    EXPECT_FALSE(allowed("SHARED", "github.com/acme", ""));
    EXPECT_TRUE(allowed("OWNER", "github.com/other/x", ""));
    EXPECT_TRUE(allowed("ANYWHERE", "", ""));
    EXPECT_FALSE(allowed("NPM_TOKEN", "", ""));

    auto unscoped = policy->decide("LEGACY", "github.com/acme/app", "main");
    EXPECT_FALSE(unscoped.allowed);
    EXPECT_NE(unscoped.reason.find("LEGACY"), std::string::npos);
    EXPECT_NE(unscoped.reason.find("ci_secrets_policy"), std::string::npos);
    auto other = policy->decide("DEPLOY_KEY", "github.com/mallory/app", "main");
    EXPECT_NE(other.reason.find("github.com/mallory/app"), std::string::npos) << other.reason;
    auto branch = policy->decide("DEPLOY_KEY", "github.com/acme/app", "feature");
    EXPECT_NE(branch.reason.find("main, release/*"), std::string::npos) << branch.reason;
    EXPECT_NE(branch.reason.find("feature"), std::string::npos) << branch.reason;
    EXPECT_EQ(policy->names(), (std::vector<std::string>{"ANYWHERE", "DEPLOY_KEY", "NPM_TOKEN", "OWNER", "SHARED"}));
}

TEST(SecretPolicy, BadLinesNameTheLine) {
    for (const char* text : {"1BAD *\n", "NAME\n", "NAME relative\n", "NAME github.com/*\n", "NAME acme/app branches=\n",
                             "\n\nNAME https://github.com/a/../b\n"}) {
        auto p = SecretPolicy::parse(text);
        ASSERT_FALSE(p.ok()) << text;
        EXPECT_NE(p.error().message.find("line "), std::string::npos) << p.error().message;
    }
    EXPECT_EQ(SecretPolicy::parse("\n\nNAME relative\n").error().message.find("line 3"), 18u);
}

TEST(SecretForms, HexAndBase64InEveryAlignment) {
    const std::string secret = "kiln-test-secret-4f9a1c";
    auto forms = secret_forms(secret);
    auto has = [&](const std::string& f) { return std::find(forms.begin(), forms.end(), f) != forms.end(); };
    EXPECT_TRUE(has(secret));
    EXPECT_TRUE(has("6b696c6e2d746573742d7365637265742d346639613163"));
    EXPECT_TRUE(has("6B696C6E2D746573742D7365637265742D346639613163"));
    EXPECT_TRUE(has("a2lsbi10ZXN0LXNlY3JldC00ZjlhMWM="));  // base64
    EXPECT_TRUE(has("a2lsbi10ZXN0LXNlY3JldC00ZjlhMWM"));
    for (size_t i = 1; i < forms.size(); ++i) EXPECT_GE(forms[i - 1].size(), forms[i].size()) << "longest first";

    // Whatever comes before and after it, base64 of a text holding the secret holds a form of it.
    auto b64 = [](const std::string& data, bool url) {
        const char* a = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                            : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        std::string out;
        for (size_t i = 0; i < data.size(); i += 3) {
            uint32_t n = uint32_t(uint8_t(data[i])) << 16;
            if (i + 1 < data.size()) n |= uint32_t(uint8_t(data[i + 1])) << 8;
            if (i + 2 < data.size()) n |= uint8_t(data[i + 2]);
            out += a[(n >> 18) & 63];
            out += a[(n >> 12) & 63];
            out += i + 1 < data.size() ? a[(n >> 6) & 63] : '=';
            out += i + 2 < data.size() ? a[n & 63] : '=';
        }
        return out;
    };
    for (bool url : {false, true})
        for (const char* before : {"", "x", "xy", "export KEY=\"", "{\"k\":\"\xff\xfe"})
            for (const char* after : {"", "\n", "\"}", "?>"}) {
                std::string encoded = b64(std::string(before) + secret + after, url);
                bool found = false;
                for (const auto& f : forms) found = found || (f.size() >= 20 && encoded.find(f) != std::string::npos);
                EXPECT_TRUE(found) << "no form of the secret in " << encoded;
            }
}

TEST(SecretForms, TheJobLogMasksThem) {
    test::TempDir dir;
    auto log = JobLog::open(dir.path() + "/log.ndjson");
    ASSERT_TRUE(log.ok());
    const std::string secret = "s3cr3t-value-Zz9";
    (*log)->set_masked(secret_forms(secret));
    (*log)->output("step", "stdout", "plain s3cr3t-value-Zz9\n");
    (*log)->output("step", "stdout", "b64 czNjcjN0LXZhbHVlLVp6OQ==\n");
    (*log)->output("step", "stdout", "hex 7333637233742d76616c75652d5a7a39\n");
    (*log)->output("step", "stdout", "HEX 7333637233742D76616C75652D5A7A39\n");
    (*log)->event({{"type", "warning"}, {"message", "in a message: czNjcjN0LXZhbHVlLVp6OQ"}});
    std::ifstream in(dir.path() + "/log.ndjson");
    std::stringstream text;
    text << in.rdbuf();
    for (const char* leaked : {"s3cr3t", "czNjcjN0LXZhbHVlLVp6O", "7333637233742", "7333637233742D"})
        EXPECT_EQ(text.str().find(leaked), std::string::npos) << leaked << " in\n" << text.str();
    EXPECT_NE(text.str().find("plain ***"), std::string::npos) << text.str();
}

}  // namespace
}  // namespace kiln::ci
