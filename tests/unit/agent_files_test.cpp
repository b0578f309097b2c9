// Agent file operation tests over a socketpair: write/read round trips, atomicity, hostile paths, list/stat/mkdir/remove.
#include <sys/stat.h>

#include <fstream>

#include "agent_test_harness.h"

using namespace kiln;
using namespace kiln::agent;
using namespace kiln::agent::testing;

namespace {

StreamReply write_file(AgentHarness& agent, const std::string& path, const std::string& content, json fields = {}) {
    if (!fields.is_object()) fields = json::object();
    fields["path"] = path;
    uint32_t stream = agent.next_stream();
    agent.request(stream, proto::op::kWrite, fields);
    for (size_t off = 0; off < content.size(); off += 64 * 1024)
        agent.send(FrameType::Data, stream, content.substr(off, 64 * 1024));
    agent.send(FrameType::Eof, stream);
    return agent.collect(stream);
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> entry_names(const json& listing) {
    std::vector<std::string> names;
    for (const auto& e : listing["entries"]) names.push_back(e["name"]);
    return names;
}

}  // namespace

TEST(AgentFiles, WriteThenReadRoundTripWithMode) {
    TempDir dir;
    AgentHarness agent;
    std::string content;
    for (int i = 0; i < 300000; ++i) content.push_back(static_cast<char>(i * 7 % 256));
    std::string path = dir / "sub/deeper/blob.bin";
    auto written = write_file(agent, path, content, json{{"mode", 0640}});
    ASSERT_TRUE(written.ok()) << written.body.dump();
    EXPECT_EQ(written.body["size"], content.size());
    EXPECT_EQ(slurp(path), content);

    auto info = proto::parse_file_info(agent.call(proto::op::kStat, json{{"path", path}}).body);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->mode, 0640u);
    EXPECT_EQ(info->type, "file");
    EXPECT_EQ(info->size, content.size());
    EXPECT_EQ(info->name, path);

    auto read = agent.call(proto::op::kRead, json{{"path", path}});
    ASSERT_TRUE(read.ok()) << read.body.dump();
    EXPECT_EQ(read.data, content);
    EXPECT_EQ(read.body["size"], content.size());
    for (const auto& f : read.frames) EXPECT_LE(f.payload.size(), 64u * 1024);

    // Only the file: no temp file left beside it.
    EXPECT_EQ(entry_names(agent.call(proto::op::kList, json{{"path", dir / "sub/deeper"}}).body),
              std::vector<std::string>{"blob.bin"});
}

TEST(AgentFiles, OverwriteIsAtomicAndEmptyFilesWork) {
    TempDir dir;
    AgentHarness agent;
    ASSERT_TRUE(write_file(agent, dir / "f", "old content").ok());
    ASSERT_TRUE(write_file(agent, dir / "f", "").ok());
    EXPECT_EQ(slurp(dir / "f"), "");
    auto read = agent.call(proto::op::kRead, json{{"path", dir / "f"}});
    EXPECT_TRUE(read.ok());
    EXPECT_EQ(read.body["size"], 0);
}

TEST(AgentFiles, WriteWithoutParentsNeedsTheFolder) {
    TempDir dir;
    AgentHarness agent;
    auto reply = agent.call(proto::op::kWrite, json{{"path", dir / "missing/f"}, {"parents", false}});
    EXPECT_EQ(reply.error_code(), ErrorCode::NotFound);
}

TEST(AgentFiles, WriteOntoADirectoryIsInvalid) {
    TempDir dir;
    AgentHarness agent;
    EXPECT_EQ(agent.call(proto::op::kWrite, json{{"path", dir.path()}}).error_code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kWrite, json{{"path", dir.path() + "/"}}).error_code(),
              ErrorCode::InvalidArgument);
}

TEST(AgentFiles, AbandonedWriteLeavesNoTempFileAndNoTarget) {
    TempDir dir;
    AgentHarness agent;
    uint32_t stream = agent.next_stream();
    agent.request(stream, proto::op::kWrite, json{{"path", dir / "partial"}});
    agent.send(FrameType::Data, stream, "some bytes");
    agent.send(FrameType::Stdout, stream, "nonsense");  // only the agent sends Stdout: the stream ends
    EXPECT_EQ(agent.collect(stream).error_code(), ErrorCode::InvalidArgument);
    auto listing = agent.call(proto::op::kList, json{{"path", dir.path()}});
    EXPECT_TRUE(entry_names(listing.body).empty()) << listing.body.dump();
}

TEST(AgentFiles, ReadErrors) {
    TempDir dir;
    AgentHarness agent;
    EXPECT_EQ(agent.call(proto::op::kRead, json{{"path", dir / "nope"}}).error_code(), ErrorCode::NotFound);
    EXPECT_EQ(agent.call(proto::op::kRead, json{{"path", dir.path()}}).error_code(), ErrorCode::InvalidArgument);
    ASSERT_EQ(mkfifo((dir / "fifo").c_str(), 0600), 0);
    EXPECT_EQ(agent.call(proto::op::kRead, json{{"path", dir / "fifo"}}).error_code(), ErrorCode::InvalidArgument);
}

TEST(AgentFiles, PermissionDeniedIsReportedAsSuch) {
    if (geteuid() == 0) {
        // Root reads anything; use an exec as nobody to see the mapping end to end instead.
        TempDir dir;
        AgentHarness agent;
        ASSERT_TRUE(write_file(agent, dir / "secret", "x", json{{"mode", 0600}}).ok());
        chmod(dir.path().c_str(), 0755);
        auto reply = agent.call(proto::op::kExec, json{{"argv", {"cat", dir / "secret"}}, {"uid", 65534}, {"gid", 65534}});
        EXPECT_EQ(reply.body["exit_code"], 1);
        EXPECT_NE(reply.err.find("Permission denied"), std::string::npos) << reply.err;
        return;
    }
    TempDir dir;
    AgentHarness agent;
    ASSERT_TRUE(write_file(agent, dir / "secret", "x", json{{"mode", 0}}).ok());
    EXPECT_EQ(agent.call(proto::op::kRead, json{{"path", dir / "secret"}}).error_code(),
              ErrorCode::PermissionDenied);
}

TEST(AgentFiles, HostilePathsAreRejected) {
    AgentHarness agent;
    std::vector<std::string> bad = {"", "relative/path", "tmp", std::string("/tmp/a\0b", 8), std::string(5000, '/')};
    for (const char* op : {proto::op::kStat, proto::op::kList, proto::op::kRead, proto::op::kWrite, proto::op::kMkdir,
                           proto::op::kRemove}) {
        for (const auto& path : bad) {
            auto reply = agent.call(op, json{{"path", path}});
            EXPECT_EQ(reply.error_code(), ErrorCode::InvalidArgument) << op << " '" << path << "'";
        }
        EXPECT_EQ(agent.call(op, json{{"path", 42}}).error_code(), ErrorCode::InvalidArgument) << op;
    }
    EXPECT_EQ(agent.call(proto::op::kRemove, json{{"path", "/"}, {"recursive", true}}).error_code(),
              ErrorCode::InvalidArgument);
}

TEST(AgentFiles, ListIsSortedAndTyped) {
    TempDir dir;
    AgentHarness agent;
    ASSERT_TRUE(write_file(agent, dir / "b.txt", "bb").ok());
    ASSERT_TRUE(write_file(agent, dir / "a.txt", "a").ok());
    ASSERT_TRUE(agent.call(proto::op::kMkdir, json{{"path", dir / "c"}}).ok());
    ASSERT_EQ(symlink("a.txt", (dir / "link").c_str()), 0);
    auto listing = agent.call(proto::op::kList, json{{"path", dir.path()}});
    ASSERT_TRUE(listing.ok());
    EXPECT_EQ(entry_names(listing.body), (std::vector<std::string>{"a.txt", "b.txt", "c", "link"}));
    std::map<std::string, std::string> types;
    for (const auto& e : listing.body["entries"]) {
        auto info = proto::parse_file_info(e);
        ASSERT_TRUE(info.ok());
        types[info->name] = info->type;
    }
    EXPECT_EQ(types["a.txt"], "file");
    EXPECT_EQ(types["c"], "dir");
    EXPECT_EQ(types["link"], "symlink");
    EXPECT_EQ(agent.call(proto::op::kList, json{{"path", dir / "a.txt"}}).error_code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kList, json{{"path", dir / "none"}}).error_code(), ErrorCode::NotFound);
    auto info = proto::parse_file_info(agent.call(proto::op::kStat, json{{"path", dir / "link"}}).body);
    EXPECT_EQ(info->type, "symlink");
    EXPECT_EQ(agent.call(proto::op::kStat, json{{"path", dir / "none"}}).error_code(), ErrorCode::NotFound);
}

TEST(AgentFiles, MkdirParentsAndExists) {
    TempDir dir;
    AgentHarness agent;
    std::string deep = dir / "x/y/z";
    EXPECT_EQ(agent.call(proto::op::kMkdir, json{{"path", deep}, {"parents", false}}).error_code(),
              ErrorCode::NotFound);
    ASSERT_TRUE(agent.call(proto::op::kMkdir, json{{"path", deep}, {"mode", 0700}}).ok());
    struct stat st;
    ASSERT_EQ(stat(deep.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    EXPECT_TRUE(agent.call(proto::op::kMkdir, json{{"path", deep}}).ok());  // -p: already there is fine
    EXPECT_EQ(agent.call(proto::op::kMkdir, json{{"path", deep}, {"parents", false}}).error_code(),
              ErrorCode::Exists);
    ASSERT_TRUE(write_file(agent, dir / "file", "x").ok());
    EXPECT_EQ(agent.call(proto::op::kMkdir, json{{"path", dir / "file"}}).error_code(), ErrorCode::Exists);
    EXPECT_NE(agent.call(proto::op::kMkdir, json{{"path", dir / "file/sub"}}).error_code(), std::nullopt);
}

TEST(AgentFiles, RemoveFilesDirsAndTreesWithoutFollowingSymlinks) {
    TempDir dir;
    TempDir outside;
    AgentHarness agent;
    ASSERT_TRUE(write_file(agent, outside / "keep", "precious").ok());
    ASSERT_TRUE(write_file(agent, dir / "tree/a/b/c/file", "1").ok());
    ASSERT_TRUE(write_file(agent, dir / "tree/a/other", "2").ok());
    ASSERT_EQ(symlink(outside.path().c_str(), (dir / "tree/a/escape").c_str()), 0);
    ASSERT_TRUE(write_file(agent, dir / "single", "x").ok());
    ASSERT_TRUE(agent.call(proto::op::kMkdir, json{{"path", dir / "empty"}}).ok());

    EXPECT_TRUE(agent.call(proto::op::kRemove, json{{"path", dir / "single"}}).ok());
    EXPECT_TRUE(agent.call(proto::op::kRemove, json{{"path", dir / "empty"}}).ok());
    EXPECT_EQ(agent.call(proto::op::kRemove, json{{"path", dir / "single"}}).error_code(), ErrorCode::NotFound);
    auto not_empty = agent.call(proto::op::kRemove, json{{"path", dir / "tree"}});
    EXPECT_FALSE(not_empty.ok());
    EXPECT_NE(not_empty.body.value("message", "").find("not empty"), std::string::npos);

    EXPECT_TRUE(agent.call(proto::op::kRemove, json{{"path", dir / "tree"}, {"recursive", true}}).ok());
    EXPECT_EQ(agent.call(proto::op::kStat, json{{"path", dir / "tree"}}).error_code(), ErrorCode::NotFound);
    EXPECT_EQ(slurp(outside / "keep"), "precious");
    EXPECT_TRUE(entry_names(agent.call(proto::op::kList, json{{"path", dir.path()}}).body).empty());
}
