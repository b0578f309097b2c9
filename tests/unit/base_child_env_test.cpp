// What a spawned child's environment holds: by default only minimal_environment(), whatever this
// process's own environment carries (kilnd's holds KILN_* config and may hold secrets).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <set>
#include <sstream>

#include "base/child_process.h"

using namespace kiln;

namespace {

// Sets variables in this process's environment for one test, and removes them after.
class ScopedEnv {
public:
    explicit ScopedEnv(std::vector<std::pair<std::string, std::string>> vars) : m_vars(std::move(vars)) {
        for (const auto& [name, value] : m_vars) ::setenv(name.c_str(), value.c_str(), 1);
    }
    ~ScopedEnv() {
        for (const auto& [name, value] : m_vars) ::unsetenv(name.c_str());
    }

private:
    std::vector<std::pair<std::string, std::string>> m_vars;
};

constexpr const char* kSecretValue = "s3cr3t-value-only-the-parent-knows";

ScopedEnv parent_with_secrets() {
    return ScopedEnv({{"KILN_CI_SECRET_DEPLOY_KEY", kSecretValue},
                      {"KILN_GITHUB_TOKEN", kSecretValue},
                      {"KILN_GITHUB_WEBHOOK_SECRET", kSecretValue},
                      {"UNRELATED_PARENT_VAR", kSecretValue}});
}

// The child's environment, one NAME=value per element, as `env -0` prints it.
std::set<std::string> child_environment(Result<CapturedRun> run) {
    EXPECT_TRUE(run.ok()) << run.error().to_string();
    if (!run.ok()) return {};
    EXPECT_TRUE(run->status.success()) << run->output;
    std::set<std::string> out;
    std::istringstream in(run->output);
    for (std::string entry; std::getline(in, entry, '\0');) out.insert(entry);
    return out;
}

}  // namespace

TEST(ChildEnvironment, DefaultIsMinimalWhateverTheParentHolds) {
    auto env = parent_with_secrets();
    ASSERT_NE(::getenv("KILN_CI_SECRET_DEPLOY_KEY"), nullptr);  // the parent really has them

    auto seen = child_environment(run_and_capture({"env", "-0"}, Millis(5000)));
    auto minimal = minimal_environment();
    EXPECT_EQ(seen, std::set<std::string>(minimal.begin(), minimal.end()));
    for (const auto& entry : seen) {
        EXPECT_NE(entry.rfind("KILN_", 0), 0u) << entry;
        EXPECT_EQ(entry.find(kSecretValue), std::string::npos) << entry;
    }
    EXPECT_TRUE(seen.count("LANG=C.UTF-8"));

    // ChildProcess::spawn directly, through a shell (which adds PWD and the like, never ours).
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    SpawnOptions options;
    options.argv = {"sh", "-c", "env; exit 0"};
    options.stdout_fd = fds[1];
    auto child = ChildProcess::spawn(options);
    ::close(fds[1]);
    ASSERT_TRUE(child.ok()) << child.error().to_string();
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);
    ASSERT_TRUE((*child)->wait_for(Millis(5000)).has_value());
    EXPECT_EQ(out.find("KILN_"), std::string::npos) << out;
    EXPECT_EQ(out.find(kSecretValue), std::string::npos) << out;
    EXPECT_EQ(out.find("UNRELATED_PARENT_VAR"), std::string::npos) << out;
}

TEST(ChildEnvironment, AnExplicitEnvironmentIsExactlyWhatTheChildGets) {
    auto env = parent_with_secrets();
    std::vector<std::string> given = {"PATH=/usr/bin:/bin", "HOME=/nonexistent", "ONLY_THIS=1"};
    auto seen = child_environment(run_and_capture({"env", "-0"}, Millis(5000), 4096, given));
    EXPECT_EQ(seen, std::set<std::string>(given.begin(), given.end()));

    // Nothing at all, when asked for nothing.
    auto none = child_environment(run_and_capture({"/usr/bin/env", "-0"}, Millis(5000), 4096, {}));
    EXPECT_TRUE(none.empty());
}

TEST(ChildEnvironment, InheritingIsAnExplicitChoice) {
    auto env = parent_with_secrets();
    auto seen = child_environment(run_and_capture({"env", "-0"}, Millis(5000), 1 << 20, inherited_environment()));
    EXPECT_TRUE(seen.count(std::string("KILN_CI_SECRET_DEPLOY_KEY=") + kSecretValue));
}

TEST(ChildEnvironment, TheProgramIsFoundOnTheChildsPath) {
    // A PATH without `env` on it: not found, although the parent's PATH has it.
    auto missing = ChildProcess::spawn(SpawnOptions{.argv = {"env"}, .env = {"PATH=/nonexistent-dir"}});
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
    EXPECT_NE(missing.error().message.find("PATH=/nonexistent-dir"), std::string::npos) << missing.error().message;
    // An empty PATH entry is not the current directory (ours, where the search runs, holds `env`).
    char here[4096];
    ASSERT_NE(::getcwd(here, sizeof here), nullptr);
    ASSERT_EQ(::chdir("/usr/bin"), 0);
    auto from_cwd = ChildProcess::spawn(SpawnOptions{.argv = {"env"}, .env = {"PATH=:"}});
    ASSERT_EQ(::chdir(here), 0);
    EXPECT_FALSE(from_cwd.ok());
    // No PATH at all: the default one.
    auto run = run_and_capture({"true"}, Millis(5000), 4096, {"LANG=C.UTF-8"});
    ASSERT_TRUE(run.ok()) << run.error().to_string();
    EXPECT_TRUE(run->status.success());
}
