// Functional tests of the `kiln` binary: exit codes and streamed output of `kiln vm run`.
#include <unistd.h>

#include "base/child_process.h"
#include "base/file_util.h"
#include "vm_test_env.h"

using namespace kiln;

namespace {

// The kiln binary: KILN_CLI_PATH (a compile definition), $KILN_BIN, or beside this test in the build tree.
std::string kiln_binary() {
#ifdef KILN_CLI_PATH
    return KILN_CLI_PATH;
#else
    if (const char* env = std::getenv("KILN_BIN"); env && *env) return env;
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return "kiln";
    std::string dir(self, static_cast<size_t>(n));
    dir = dir.substr(0, dir.rfind('/'));        // build/tests
    return dir.substr(0, dir.rfind('/')) + "/src/cli/kiln";
#endif
}

class KilnCli : public ::testing::Test {
protected:
    void SetUp() override {
        KILN_REQUIRE_VM();
        if (!path_exists(kiln_binary())) {
            if (test::in_ci()) FAIL() << "no kiln binary at " << kiln_binary();
            GTEST_SKIP() << "no kiln binary at " << kiln_binary() << " (set KILN_BIN)";
        }
    }

    CapturedRun kiln(std::vector<std::string> args) {
        args.insert(args.begin(), kiln_binary());
        // The CLI as a user runs it: with the test's environment (KILN_CACHE, KILN_KERNEL, ...).
        auto run = run_and_capture(args, Millis(120000), 256 * 1024, inherited_environment());
        EXPECT_TRUE(run.ok()) << run.error().to_string();
        return run.ok() ? *run : CapturedRun{};
    }
};

}  // namespace

TEST_F(KilnCli, VmRunExitsWithTheCommandsStatus) {
    auto run = kiln({"vm", "run", "--image", test::test_image(), "--", "sh", "-c", "exit 3"});
    EXPECT_EQ(run.status.exit_code, 3) << run.output;
}

TEST_F(KilnCli, VmRunStreamsOutputAndMapsSignals) {
    auto echo = kiln({"vm", "run", "--image", test::test_image(), "--", "echo", "hello from the guest"});
    EXPECT_EQ(echo.status.exit_code, 0) << echo.output;
    EXPECT_EQ(echo.output, "hello from the guest\n");
    auto killed = kiln({"vm", "run", "--image", test::test_image(), "--", "sh", "-c", "kill -9 $$"});
    EXPECT_EQ(killed.status.exit_code, 137) << killed.output;
}

TEST_F(KilnCli, VmRunFailuresExit125) {
    auto run = kiln({"vm", "run", "--image", "no-such-image", "--", "true"});
    EXPECT_EQ(run.status.exit_code, 125);
    EXPECT_NE(run.output.find("no-such-image"), std::string::npos) << run.output;
    auto usage = kiln({"vm", "run", "--vcpus", "0", "--", "true"});
    EXPECT_EQ(usage.status.exit_code, 125) << usage.output;
}
