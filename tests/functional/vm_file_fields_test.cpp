// Functional tests, in a real guest, of the file operations E2B's filesystem API needs: move,
// depth listings, owner and group names, symlinks reported as themselves, files and folders
// written as the user `user`, and watch events.
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "vm_test_env.h"

using namespace kiln;

KILN_SHARED_VM_SUITE(VmFileFields);

namespace {

std::set<std::string> paths_of(const std::vector<proto::FileInfo>& entries) {
    std::set<std::string> paths;
    for (const auto& e : entries) paths.insert(e.path);
    return paths;
}

bool wait_for(const std::function<bool()>& done, Millis timeout = Millis(30000)) {
    auto deadline = Clock::now() + timeout;
    while (!done()) {
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

}  // namespace

TEST_F(VmFileFields, MoveAndDepthListing) {
    sh("rm -rf /tmp/kiln-ff && mkdir -p /tmp/kiln-ff/a/b/c && echo 1 > /tmp/kiln-ff/a/one && echo 2 > /tmp/kiln-ff/a/b/two"
       " && echo 3 > /tmp/kiln-ff/a/b/c/three");
    auto two = agent().list(proto::ListRequest{"/tmp/kiln-ff", 2});
    ASSERT_TRUE(two.ok()) << two.error().to_string();
    EXPECT_EQ(paths_of(*two), (std::set<std::string>{"/tmp/kiln-ff/a", "/tmp/kiln-ff/a/b", "/tmp/kiln-ff/a/one"}));
    auto all = agent().list(proto::ListRequest{"/tmp/kiln-ff", 10});
    ASSERT_TRUE(all.ok());
    EXPECT_EQ(all->size(), 6u);
    auto flat = agent().list("/tmp/kiln-ff/a");
    ASSERT_TRUE(flat.ok());
    EXPECT_EQ(flat->size(), 2u);

    ASSERT_TRUE(agent().move("/tmp/kiln-ff/a/b", "/tmp/kiln-ff/moved").ok());
    EXPECT_EQ(sh("cat /tmp/kiln-ff/moved/c/three; test -e /tmp/kiln-ff/a/b || echo gone").stdout_data, "3\ngone\n");
    auto missing = agent().move("/tmp/kiln-ff/a/b", "/tmp/kiln-ff/x");
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
    auto onto_full = agent().move("/tmp/kiln-ff/a", "/tmp/kiln-ff/moved");
    ASSERT_FALSE(onto_full.ok());
    EXPECT_EQ(onto_full.error().code, ErrorCode::Exists);
    sh("rm -rf /tmp/kiln-ff");
}

TEST_F(VmFileFields, OwnerNamesAndSymlinksReportedAsThemselves) {
    auto home = agent().stat("/home/user");
    ASSERT_TRUE(home.ok()) << home.error().to_string();
    EXPECT_EQ(home->type, "dir");
    EXPECT_EQ(home->uid, 1000u);
    EXPECT_EQ(home->owner, "user");
    EXPECT_EQ(home->group, "user");
    auto passwd = agent().stat("/etc/passwd");
    ASSERT_TRUE(passwd.ok());
    EXPECT_EQ(passwd->owner, "root");
    EXPECT_EQ(passwd->group, "root");

    sh("rm -rf /tmp/kiln-links && mkdir /tmp/kiln-links && echo hello > /tmp/kiln-links/file && "
       "ln -s file /tmp/kiln-links/rel && ln -s /nowhere /tmp/kiln-links/dangling && chown 4242:4343 /tmp/kiln-links/file");
    auto rel = agent().stat("/tmp/kiln-links/rel");
    ASSERT_TRUE(rel.ok());
    EXPECT_EQ(rel->type, "symlink");
    EXPECT_EQ(rel->symlink_target, "file");
    auto entries = agent().list("/tmp/kiln-links");
    ASSERT_TRUE(entries.ok());
    ASSERT_EQ(entries->size(), 3u);
    EXPECT_EQ((*entries)[0].name, "dangling");
    EXPECT_EQ((*entries)[0].type, "symlink");
    EXPECT_EQ((*entries)[0].symlink_target, "/nowhere");
    EXPECT_EQ((*entries)[1].name, "file");
    EXPECT_EQ((*entries)[1].owner, "4242");  // no name in the guest: the number
    EXPECT_EQ((*entries)[1].group, "4343");
    EXPECT_TRUE((*entries)[1].symlink_target.empty());
    sh("rm -rf /tmp/kiln-links");
}

TEST_F(VmFileFields, WritesAndFoldersAsTheUser) {
    sh("rm -rf /home/user/kiln-new");
    proto::WriteRequest write{"/home/user/kiln-new/deeper/f.txt", 0644, true, "user"};
    auto written = agent().write_file(write, vm::source_from_string("mine\n"));
    ASSERT_TRUE(written.ok()) << written.error().to_string();
    for (const char* path : {"/home/user/kiln-new", "/home/user/kiln-new/deeper", "/home/user/kiln-new/deeper/f.txt"}) {
        auto info = agent().stat(path);
        ASSERT_TRUE(info.ok()) << path;
        EXPECT_EQ(info->uid, 1000u) << path;
        EXPECT_EQ(info->gid, 1000u) << path;
        EXPECT_EQ(info->owner, "user") << path;
    }
    ASSERT_TRUE(agent().mkdir(proto::MkdirRequest{"/home/user/kiln-new/made/here", 0700, true, "user"}).ok());
    auto made = agent().stat("/home/user/kiln-new/made/here");
    ASSERT_TRUE(made.ok());
    EXPECT_EQ(made->owner, "user");
    EXPECT_EQ(made->mode, 0700u);

    // The user itself can write there.
    proto::ExecRequest as_user;
    as_user.shell = "echo more >> /home/user/kiln-new/deeper/f.txt && touch /home/user/kiln-new/made/here/t && echo ok";
    as_user.uid = 1000;
    as_user.gid = 1000;
    auto out = agent().exec_collect(as_user);
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(out->stdout_data, "ok\n") << out->stderr_data;

    auto unknown = agent().write_file(proto::WriteRequest{"/tmp/kiln-nouser", 0644, true, "nosuchuser"},
                                      vm::source_from_string("x"));
    ASSERT_FALSE(unknown.ok());
    EXPECT_EQ(unknown.error().code, ErrorCode::NotFound);
    EXPECT_EQ(unknown.error().message, "no such user 'nosuchuser'");
    sh("rm -rf /home/user/kiln-new");
}

TEST_F(VmFileFields, WatchReportsChangesUntilStoppedAndEndsWhenTheFolderGoes) {
    sh("rm -rf /tmp/kiln-watch && mkdir -p /tmp/kiln-watch");
    std::atomic<bool> stop{false}, started{false};
    std::mutex mutex;
    std::set<std::pair<std::string, std::string>> seen;
    Status watched = ok_status();
    std::thread watcher([&] {
        watched = agent().watch(
            "/tmp/kiln-watch", true,
            [&](const proto::WatchEvent& e) {
                std::lock_guard lock(mutex);
                seen.insert({e.type, e.name});
            },
            stop, [&] { started = true; });
    });
    if (!wait_for([&] { return started.load(); })) {
        stop = true;  // a failed assertion must not leave the thread joinable
        watcher.join();
        FAIL() << "the watch did not start: " << (watched.ok() ? "no Started" : watched.error().to_string());
    }
    sh("cd /tmp/kiln-watch && echo hi > a.txt && mkdir sub && echo x > sub/b.txt && mv a.txt c.txt && "
       "chmod 600 sub/b.txt && rm c.txt");
    const std::set<std::pair<std::string, std::string>> want{
        {"create", "a.txt"},     {"write", "a.txt"},  {"create", "sub"},   {"create", "sub/b.txt"},
        {"rename", "a.txt"},     {"create", "c.txt"}, {"chmod", "sub/b.txt"}, {"remove", "c.txt"}};
    bool all = wait_for([&] {
        std::lock_guard lock(mutex);
        for (const auto& w : want)
            if (!seen.count(w)) return false;
        return true;
    });
    stop = true;
    watcher.join();
    EXPECT_TRUE(all);
    for (const auto& w : want) EXPECT_TRUE(seen.count(w)) << w.first << " " << w.second;
    EXPECT_TRUE(watched.ok()) << watched.error().to_string();

    // A second watch ends with not_found when its folder is removed.
    std::atomic<bool> stop_second{false}, live{false}, ended{false};
    Status gone = ok_status();
    std::thread ending([&] {
        gone = agent().watch("/tmp/kiln-watch/sub", false, {}, stop_second, [&] { live = true; });
        ended = true;
    });
    EXPECT_TRUE(wait_for([&] { return live.load(); }));
    sh("rm -rf /tmp/kiln-watch");
    // The folder's end must end the watch by itself; stopping it is only so a failure cannot hang.
    EXPECT_TRUE(wait_for([&] { return ended.load(); }));
    stop_second = true;
    ending.join();
    ASSERT_FALSE(gone.ok());
    EXPECT_EQ(gone.error().code, ErrorCode::NotFound);
    EXPECT_TRUE(agent().ping().ok());
}
