// Agent file operations added for E2B's filesystem API, over a socketpair: owner/group names,
// symlinks reported as themselves, list depth, move, and `user` on write and mkdir.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include "agent/user_lookup.h"
#include "agent_test_harness.h"

using namespace kiln;
using namespace kiln::agent;
using namespace kiln::agent::testing;

namespace {

void make_file(const std::string& path, const std::string& content = "x") {
    std::ofstream(path, std::ios::binary) << content;
}

StreamReply write_file(AgentHarness& agent, const std::string& path, const std::string& content, json fields) {
    fields["path"] = path;
    uint32_t stream = agent.next_stream();
    agent.request(stream, proto::op::kWrite, fields);
    agent.send(FrameType::Data, stream, content);
    agent.send(FrameType::Eof, stream);
    return agent.collect(stream);
}

std::map<std::string, json> by_path(const json& listing) {
    std::map<std::string, json> entries;
    for (const auto& e : listing["entries"]) entries[e.value("path", "")] = e;
    return entries;
}

// The host's own user for a uid, as the agent (reading this host's /etc/passwd) names it.
std::string host_user_name(uid_t uid) { return AccountNames::load().user_name(uid); }

}  // namespace

TEST(AgentAccountNames, NamesIdsByTheirFirstLineAndFallsBackToNumbers) {
    TempDir dir;
    std::ofstream(dir / "passwd") << "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken line\n"
                                     "user:x:1000:1000::/home/user:/bin/bash\nalias:x:1000:1000::/x:/bin/sh\n"
                                     "bad:x:notanumber:1::/:/bin/sh\n:x:5:5::/:/bin/sh\n";
    std::ofstream(dir / "group") << "root:x:0:\nuser:x:1000:\nagain:x:1000:\n:x:7:\n";
    AccountNames names = AccountNames::load(AccountFiles{dir / "passwd", dir / "group"});
    EXPECT_EQ(names.user_name(1000), "user");  // the first line of a uid names it
    EXPECT_EQ(names.user_name(0), "root");
    EXPECT_EQ(names.user_name(5), "5");  // a line without a name names nothing
    EXPECT_EQ(names.user_name(42), "42");
    EXPECT_EQ(names.group_name(1000), "user");
    EXPECT_EQ(names.group_name(7), "7");

    AccountNames none = AccountNames::load(AccountFiles{"/nonexistent/passwd", "/nonexistent/group"});
    EXPECT_EQ(none.user_name(0), "0");
    EXPECT_EQ(none.group_name(0), "0");
}

TEST(AgentFileFields, StatNamesOwnerAndGroupAndReportsSymlinksThemselves) {
    TempDir dir;
    AgentHarness agent;
    make_file(dir / "target.txt", "hello");
    ASSERT_EQ(symlink("target.txt", (dir / "link").c_str()), 0);
    ASSERT_EQ(symlink("/nonexistent/dangling", (dir / "dangling").c_str()), 0);

    auto file = agent.call(proto::op::kStat, json{{"path", dir / "target.txt"}});
    ASSERT_TRUE(file.ok()) << file.body.dump();
    EXPECT_EQ(file.body["owner"], host_user_name(getuid()));
    EXPECT_FALSE(file.body["group"].get<std::string>().empty());
    EXPECT_FALSE(file.body.contains("symlink_target"));

    auto link = proto::parse_file_info(agent.call(proto::op::kStat, json{{"path", dir / "link"}}).body);
    ASSERT_TRUE(link.ok());
    EXPECT_EQ(link->type, "symlink");
    EXPECT_EQ(link->symlink_target, "target.txt");
    EXPECT_EQ(link->size, std::string("target.txt").size());  // the link itself, not the 5-byte file

    auto dangling = proto::parse_file_info(agent.call(proto::op::kStat, json{{"path", dir / "dangling"}}).body);
    ASSERT_TRUE(dangling.ok());
    EXPECT_EQ(dangling->type, "symlink");
    EXPECT_EQ(dangling->symlink_target, "/nonexistent/dangling");
}

TEST(AgentFileFields, ListDepthWalksLevelsWithFullPathsAndNeverThroughSymlinks) {
    TempDir dir;
    AgentHarness agent;
    ASSERT_EQ(mkdir((dir / "a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((dir / "a/b").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((dir / "a/b/c").c_str(), 0755), 0);
    make_file(dir / "top.txt");
    make_file(dir / "a/one.txt");
    make_file(dir / "a/b/two.txt");
    make_file(dir / "a/b/c/three.txt");
    ASSERT_EQ(symlink(dir.path().c_str(), (dir / "a/loop").c_str()), 0);  // would recurse forever if followed

    auto one = agent.call(proto::op::kList, json{{"path", dir.path()}});
    ASSERT_TRUE(one.ok()) << one.body.dump();
    auto level1 = by_path(one.body);
    EXPECT_EQ(level1.size(), 2u);
    ASSERT_TRUE(level1.count(dir / "a"));
    EXPECT_EQ(level1[dir / "a"]["name"], "a");
    EXPECT_EQ(level1[dir / "a"]["type"], "dir");

    auto two = agent.call(proto::op::kList, json{{"path", dir.path()}, {"depth", 2}});
    ASSERT_TRUE(two.ok()) << two.body.dump();
    std::set<std::string> paths;
    for (const auto& [path, e] : by_path(two.body)) paths.insert(path);
    EXPECT_EQ(paths, (std::set<std::string>{dir / "a", dir / "top.txt", dir / "a/b", dir / "a/one.txt", dir / "a/loop"}));
    auto entries = by_path(two.body);
    EXPECT_EQ(entries[dir / "a/loop"]["type"], "symlink");
    EXPECT_EQ(entries[dir / "a/loop"]["symlink_target"], dir.path());
    EXPECT_EQ(entries[dir / "a/one.txt"]["name"], "one.txt");

    // Deeper than the tree: everything once, the symlinked folder not entered.
    auto all = agent.call(proto::op::kList, json{{"path", dir.path()}, {"depth", 10}});
    ASSERT_TRUE(all.ok());
    EXPECT_EQ(by_path(all.body).size(), 8u);
    // Sorted by path.
    std::vector<std::string> order;
    for (const auto& e : all.body["entries"]) order.push_back(e["path"]);
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));

    // "/" joins without a double slash.
    auto root = agent.call(proto::op::kList, json{{"path", "/"}});
    ASSERT_TRUE(root.ok());
    for (const auto& e : root.body["entries"]) EXPECT_EQ(e["path"], "/" + e["name"].get<std::string>());

    for (json bad : {json(0), json(-1), json(65), json("2"), json(1.5)})
        EXPECT_EQ(agent.call(proto::op::kList, json{{"path", dir.path()}, {"depth", bad}}).error_code(),
                  ErrorCode::InvalidArgument)
            << bad.dump();
}

TEST(AgentFileFields, MoveRenamesAndReportsConflicts) {
    TempDir dir;
    AgentHarness agent;
    make_file(dir / "a.txt", "A");
    make_file(dir / "b.txt", "B");
    ASSERT_EQ(mkdir((dir / "full").c_str(), 0755), 0);
    make_file(dir / "full/inside");
    ASSERT_EQ(mkdir((dir / "empty").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((dir / "d").c_str(), 0755), 0);

    auto moved = agent.call(proto::op::kMove, json{{"from", dir / "a.txt"}, {"to", dir / "c.txt"}});
    ASSERT_TRUE(moved.ok()) << moved.body.dump();
    EXPECT_EQ(access((dir / "a.txt").c_str(), F_OK), -1);
    std::ifstream in(dir / "c.txt");
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "A");

    // A file replaces a file (rename(2)); a folder an empty folder.
    EXPECT_TRUE(agent.call(proto::op::kMove, json{{"from", dir / "b.txt"}, {"to", dir / "c.txt"}}).ok());
    EXPECT_TRUE(agent.call(proto::op::kMove, json{{"from", dir / "d"}, {"to", dir / "empty"}}).ok());

    EXPECT_EQ(agent.call(proto::op::kMove, json{{"from", dir / "none"}, {"to", dir / "x"}}).error_code(),
              ErrorCode::NotFound);
    EXPECT_EQ(agent.call(proto::op::kMove, json{{"from", dir / "c.txt"}, {"to", dir / "no/such/dir/x"}}).error_code(),
              ErrorCode::NotFound);
    EXPECT_EQ(agent.call(proto::op::kMove, json{{"from", dir / "empty"}, {"to", dir / "full"}}).error_code(),
              ErrorCode::Exists);
    EXPECT_EQ(agent.call(proto::op::kMove, json{{"from", dir / "empty"}, {"to", dir / "c.txt"}}).error_code(),
              ErrorCode::Exists);
    EXPECT_EQ(agent.call(proto::op::kMove, json{{"from", dir / "full"}, {"to", dir / "full/sub"}}).error_code(),
              ErrorCode::InvalidArgument);
    for (json bad : {json{{"from", "relative"}, {"to", dir / "x"}}, json{{"from", dir / "c.txt"}},
                     json{{"from", "/"}, {"to", dir / "x"}}, json{{"from", dir / "c.txt"}, {"to", 7}}})
        EXPECT_EQ(agent.call(proto::op::kMove, bad).error_code(), ErrorCode::InvalidArgument) << bad.dump();
}

TEST(AgentFileFields, WriteAndMkdirChownToTheUser) {
    if (getuid() != 0) GTEST_SKIP() << "chown needs root";
    auto nobody = lookup_user("nobody");
    if (!nobody.ok()) GTEST_SKIP() << "this host has no user 'nobody'";
    TempDir dir;
    AgentHarness agent;
    auto written = write_file(agent, dir / "new/deeper/f.txt", "data", json{{"user", "nobody"}, {"mode", 0600}});
    ASSERT_TRUE(written.ok()) << written.body.dump();
    for (const char* path : {"new", "new/deeper", "new/deeper/f.txt"}) {
        struct stat st;
        ASSERT_EQ(lstat((dir / path).c_str(), &st), 0);
        EXPECT_EQ(st.st_uid, nobody->uid) << path;
        EXPECT_EQ(st.st_gid, nobody->gid) << path;
    }
    auto info = agent.call(proto::op::kStat, json{{"path", dir / "new/deeper/f.txt"}});
    EXPECT_EQ(info.body["owner"], "nobody");
    EXPECT_EQ(info.body["mode"], 0600);

    ASSERT_TRUE(agent.call(proto::op::kMkdir, json{{"path", dir / "m/n"}, {"user", "nobody"}}).ok());
    for (const char* path : {"m", "m/n"}) {
        struct stat st;
        ASSERT_EQ(lstat((dir / path).c_str(), &st), 0);
        EXPECT_EQ(st.st_uid, nobody->uid) << path;
    }
    // An existing folder keeps its owner.
    struct stat st;
    ASSERT_EQ(lstat(dir.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u);

    auto unknown = write_file(agent, dir / "u.txt", "x", json{{"user", "no-such-user-here"}});
    EXPECT_EQ(unknown.error_code(), ErrorCode::NotFound);
    EXPECT_EQ(unknown.body["message"], "no such user 'no-such-user-here'");
    EXPECT_EQ(access((dir / "u.txt").c_str(), F_OK), -1);
    EXPECT_EQ(agent.call(proto::op::kMkdir, json{{"path", dir / "v"}, {"user", "no-such-user-here"}}).error_code(),
              ErrorCode::NotFound);
    EXPECT_EQ(access((dir / "v").c_str(), F_OK), -1);
    for (json bad : {json("a:b"), json("../x"), json(5), json(std::string(proto::kMaxUserNameLength + 1, 'u'))})
        EXPECT_EQ(agent.call(proto::op::kMkdir, json{{"path", dir / "w"}, {"user", bad}}).error_code(),
                  ErrorCode::InvalidArgument)
            << bad.dump();
}
