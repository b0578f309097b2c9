// SpawnOptions::run_as: a child of root under another uid, with a folder of a 0700 tree bound
// where that uid can reach it (what git on kilnd's host gets, ci/jobs/git_source.cpp).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/child_process.h"
#include "base/file_util.h"

namespace kiln {
namespace {

constexpr uid_t kUid = 1999999998;  // no one's

TEST(ChildRunAs, TheChildHasTheUidNoGroupsAndSeesTheBoundFolder) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    char tmpl[] = "/var/tmp/kiln-runas-XXXXXX";  // not under /tmp, which the child's bind hides
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string root = tmpl;  // 0700, root's: the uid cannot walk through it
    const std::string area = root + "/inner/area";
    ASSERT_TRUE(make_dirs(area, 0700).ok());
    ASSERT_EQ(::chown(area.c_str(), kUid, kUid), 0);
    ASSERT_TRUE(write_file(area + "/hello", "hi\n", 0600).ok());
    ASSERT_EQ(::chown((area + "/hello").c_str(), kUid, kUid), 0);

    SpawnOptions options;
    options.argv = {"sh", "-c", "id -u; id -g; id -G; cat /tmp/hello; touch /tmp/made; cat " + area + "/hello 2>/dev/null || echo denied"};
    options.run_as = SpawnOptions::RunAs{kUid, kUid, area, "/tmp"};
    auto run = run_and_capture(options, Millis(10000), 4096);
    ASSERT_TRUE(run.ok()) << run.error().to_string();
    EXPECT_TRUE(run->status.success()) << run->output;
    const std::string id = std::to_string(kUid);
    EXPECT_EQ(run->output, id + "\n" + id + "\n" + id + "\nhi\ndenied\n") << run->output;
    struct stat st;
    ASSERT_EQ(::stat((area + "/made").c_str(), &st), 0) << "the child's /tmp is the bound folder";
    EXPECT_EQ(st.st_uid, kUid);
    EXPECT_FALSE(path_exists("/tmp/made") && ::stat("/tmp/made", &st) == 0 && st.st_uid == kUid)
        << "the bind stayed in the child's mount namespace";
    // The child starts in its bound folder, not in the parent's (kilnd started from a folder under
    // /tmp had every URL fetch fail: git could not stat a cwd the bind hid).
    options.argv = {"sh", "-c", "pwd; ls"};
    run = run_and_capture(options, Millis(10000), 4096);
    ASSERT_TRUE(run.ok() && run->status.success()) << (run.ok() ? run->output : run.error().to_string());
    EXPECT_EQ(run->output, "/tmp\nhello\nmade\n");
    // Without a bind: only the user changes, and the child starts at the root.
    options.argv = {"sh", "-c", "pwd"};
    options.run_as = SpawnOptions::RunAs{kUid, kUid, "", ""};
    run = run_and_capture(options, Millis(10000), 4096);
    ASSERT_TRUE(run.ok() && run->status.success());
    EXPECT_EQ(run->output, "/\n");
    options.argv = {"id", "-u"};
    options.run_as = SpawnOptions::RunAs{kUid, kUid, "", ""};
    run = run_and_capture(options, Millis(10000), 4096);
    ASSERT_TRUE(run.ok() && run->status.success());
    EXPECT_EQ(run->output, id + "\n");
    EXPECT_TRUE(remove_tree(root).ok());
}

TEST(ChildRunAs, AWatchThatFailsKillsTheChild) {
    SpawnOptions options;
    options.argv = {"sleep", "30"};
    int calls = 0;
    auto run = run_and_capture(options, Millis(20000), 4096, [&]() -> Status {
        return ++calls < 3 ? ok_status() : make_error(ErrorCode::TooLarge, "past the cap");
    });
    ASSERT_FALSE(run.ok());
    EXPECT_EQ(run.error().code, ErrorCode::TooLarge);
    EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace kiln
