// Canonical repository strings and the ci_repos allowlist (src/ci/jobs/repo_url.h): the hostile
// spellings an allowlist by prefix must not let through.
#include <gtest/gtest.h>

#include "ci/jobs/repo_url.h"

namespace kiln::ci {
namespace {

std::string canonical(const std::string& repo) {
    auto r = normalize_repo(repo);
    return r.ok() ? *r : "error: " + r.error().message;
}

TEST(CiRepoUrl, CanonicalSpellings) {
    EXPECT_EQ(canonical("https://github.com/acme/app.git"), "https://github.com/acme/app.git");
    EXPECT_EQ(canonical("HTTPS://GitHub.COM/acme/App"), "https://github.com/acme/App");  // path case kept
    EXPECT_EQ(canonical("https://github.com:443//acme///app/"), "https://github.com/acme/app");
    EXPECT_EQ(canonical("http://example.com:80/x"), "http://example.com/x");
    EXPECT_EQ(canonical("git://127.0.0.1:9418/r"), "git://127.0.0.1/r");
    EXPECT_EQ(canonical("git://127.0.0.1:09419/r"), "git://127.0.0.1:9419/r");
    EXPECT_EQ(canonical("http://[::1]:8080/r.git"), "http://[::1]:8080/r.git");
    EXPECT_EQ(canonical("/srv//git/app/"), "/srv/git/app");
    EXPECT_EQ(canonical("file:///srv/git/app"), "/srv/git/app");
}

TEST(CiRepoUrl, HostileSpellingsAreRefused) {
    for (const char* bad : {
             "", "relative/path", "-uupload-pack=x", "ext::sh -c x", "fd::3", "git@github.com:acme/app",
             "ssh://git@github.com/acme/app", "ftp://example.com/x", "file://host/x",
             "https://github.com/acme/../evil", "https://github.com/acme/./app", "/srv/git/../etc",
             "/srv/./git", "/a::b",
             "https://github.com@evil.com/acme/app",       // user info: the host is evil.com
             "https://user:pw@github.com/acme/app",        // credentials
             "https://github.com/acme/%2e%2e/evil",        // percent-encoded dots
             "https://github.com/acme/app?x=1", "https://github.com/acme/app#frag",
             "https://github.com\\@evil.com/acme", "https://github.com/acme\\..\\evil",
             "https://github.com/", "https://github.com", "https://gith\xc3\xbc" "b.com/acme/x",
             "https://github.com/acme/a\nb", "https://github.com:0/acme", "https://github.com:99999/acme",
             "https://github.com:x/acme", "https://.github.com/acme", "https://github..com/acme",
             "https://[zz]/r", "https://github.com /acme", "/"})
        EXPECT_FALSE(normalize_repo(bad).ok()) << bad;
    EXPECT_FALSE(normalize_repo(std::string(3000, 'a').insert(0, "https://h/")).ok());
}

TEST(CiRepoUrl, AllowlistMatchesOnSegmentBoundaries) {
    auto list = RepoAllowlist::parse("https://github.com/acme/, https://GITLAB.example.com:443/team/app.git\n/srv/git");
    ASSERT_TRUE(list.ok()) << list.error().to_string();
    auto allows = [&](const std::string& repo) {
        auto c = normalize_repo(repo);
        return c.ok() && list->allows(*c);
    };
    EXPECT_TRUE(allows("https://github.com/acme/app.git"));
    EXPECT_TRUE(allows("https://github.com/acme/app"));
    EXPECT_TRUE(allows("https://GitHub.com//acme/app/"));
    EXPECT_TRUE(allows("https://gitlab.example.com/team/app"));       // the entry's .git is ignored
    EXPECT_TRUE(allows("https://gitlab.example.com/team/app.git"));
    EXPECT_TRUE(allows("/srv/git/app"));
    EXPECT_TRUE(allows("file:///srv/git/app"));

    EXPECT_FALSE(allows("https://github.com/acme-evil/app"));         // not a segment boundary
    EXPECT_FALSE(allows("https://github.com/acmeapp.git"));
    EXPECT_FALSE(allows("https://github.com/acme.evil.com/app"));
    EXPECT_FALSE(allows("https://github.com.evil.com/acme/app"));     // another host
    EXPECT_FALSE(allows("https://evil.com/github.com/acme/app"));
    EXPECT_FALSE(allows("http://github.com/acme/app"));               // another scheme
    EXPECT_FALSE(allows("https://github.com:8443/acme/app"));         // another port
    EXPECT_FALSE(allows("https://github.com/ACME/app"));              // paths compare case-sensitively
    EXPECT_FALSE(allows("https://github.com/acme/../evil/app"));      // refused outright
    EXPECT_FALSE(allows("https://github.com@evil.com/acme/app"));
    EXPECT_FALSE(allows("https://gitlab.example.com/team/app2"));
    EXPECT_FALSE(allows("https://gitlab.example.com/team/app.gitx"));
    EXPECT_FALSE(allows("/srv/gitx/app"));
    EXPECT_FALSE(allows("/srv"));
    EXPECT_FALSE(allows("/etc/passwd"));

    // A whole host, when an operator means it.
    auto host = RepoAllowlist::parse("https://git.internal.example");
    ASSERT_TRUE(host.ok());
    EXPECT_TRUE(host->allows(*normalize_repo("https://git.internal.example/any/repo")));
    EXPECT_FALSE(host->allows(*normalize_repo("https://git.internal.example.evil.com/any/repo")));

    EXPECT_TRUE(RepoAllowlist::parse("").ok() && RepoAllowlist::parse(" , ")->empty());
    for (const char* bad : {"github.com/acme", "ssh://github.com/acme", "https://u@github.com/acme", "https://h/a/../b"})
        EXPECT_FALSE(RepoAllowlist::parse(bad).ok()) << bad;
}

}  // namespace
}  // namespace kiln::ci
