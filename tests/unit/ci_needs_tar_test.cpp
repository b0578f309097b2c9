// The needed jobs' artifacts as one tar (needs_tar.h): what goes in, under which names, what is
// left out (a symlink is never followed, a missing file is said), the bound on their size; and the
// log of a sharded job (each shard's output apart).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "ci/jobs/job_log.h"
#include "ci/jobs/needs_tar.h"
#include "ci_test_support.h"
#include "daemon_test_dir.h"

namespace kiln::ci {
namespace {

using fixtures::sh;

TEST(CiNeedsTar, APlainRelativePathStaysUnderItsFolder) {
    for (const char* ok : {"a", "dist/app.tar", "shard-0/out.txt", "test (18, debian)", "a/.hidden", "a..b"})
        EXPECT_TRUE(is_plain_relative_path(ok)) << ok;
    for (const char* bad : {"", "/etc/passwd", "..", "../x", "a/../../x", "a//b", "./a", "a/.", "a/", "a\nb"})
        EXPECT_FALSE(is_plain_relative_path(bad)) << bad;
    EXPECT_FALSE(is_plain_relative_path(std::string("a\0b", 3)));
}

TEST(CiNeedsTar, FoldersAndFilesUnderTheirNamesNoSymlinkFollowed) {
    test::TempDir dir;
    const std::string host = dir.path() + "/host";
    ASSERT_TRUE(sh("mkdir -p " + host + " && printf built > " + host + "/0 && printf report > " + host + "/1 && "
                   "printf secret > " + dir.path() + "/outside && ln -s " + dir.path() + "/outside " + host + "/2")
                    .ok());
    std::vector<NeededArtifact> files = {{host + "/0", "build/dist/app"},
                                         {host + "/1", "test (a)/shard-1/report.xml"},
                                         {host + "/2", "build/link"},      // a symlink: left out
                                         {host + "/9", "build/missing"}};  // gone: left out
    const std::string tar = dir.path() + "/needs.tar";
    auto totals = write_needs_tar(tar, {"build", "test (a)", "empty"}, files, 1 << 20);
    ASSERT_TRUE(totals.ok()) << totals.error().to_string();
    EXPECT_EQ(totals->files, 2u);
    EXPECT_EQ(totals->bytes, 11u);
    ASSERT_EQ(totals->left_out.size(), 2u);
    EXPECT_EQ(totals->left_out[0].rfind("build/link: ", 0), 0u) << totals->left_out[0];
    EXPECT_EQ(totals->left_out[1].rfind("build/missing: ", 0), 0u) << totals->left_out[1];

    // What a guest's `tar -x -C /work/needs` makes of it.
    const std::string out = dir.path() + "/out";
    ASSERT_TRUE(sh("mkdir " + out + " && tar -x -o -f " + tar + " -C " + out).ok());
    EXPECT_EQ(*read_file(out + "/build/dist/app"), "built");
    EXPECT_EQ(*read_file(out + "/test (a)/shard-1/report.xml"), "report");
    struct stat st {};
    EXPECT_EQ(::stat((out + "/empty").c_str(), &st), 0) << "a needed job without artifacts still has its folder";
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_NE(::lstat((out + "/build/link").c_str(), &st), 0);
}

TEST(CiNeedsTar, TheArtifactsTogetherAreBounded) {
    test::TempDir dir;
    ASSERT_TRUE(sh("head -c 600 /dev/zero > " + dir.path() + "/a && head -c 600 /dev/zero > " + dir.path() + "/b").ok());
    auto totals = write_needs_tar(dir.path() + "/needs.tar", {"j"},
                                  {{dir.path() + "/a", "j/a"}, {dir.path() + "/b", "j/b"}}, 1000);
    ASSERT_FALSE(totals.ok());
    EXPECT_EQ(totals.error().code, ErrorCode::TooLarge);
    EXPECT_NE(totals.error().message.find("j/b"), std::string::npos) << totals.error().message;
}

TEST(CiNeedsTar, EachReaderOfAFileReadsItAll) {
    test::TempDir dir;
    ASSERT_TRUE(sh("printf 0123456789 > " + dir.path() + "/f").ok());
    auto first = file_byte_source(dir.path() + "/f");
    auto second = file_byte_source(dir.path() + "/f");
    ::unlink((dir.path() + "/f").c_str());  // opened already: the readers still read it
    auto drain = [](vm::ByteSource& source) {
        std::string all;
        char buf[4];
        for (;;) {
            auto n = source(buf, sizeof buf);
            if (!n.ok() || *n == 0) return all;
            all.append(buf, *n);
        }
    };
    EXPECT_EQ(drain(first), "0123456789");
    EXPECT_EQ(drain(second), "0123456789");
    auto missing = file_byte_source(dir.path() + "/nothing");
    char buf[4];
    EXPECT_FALSE(missing(buf, sizeof buf).ok());
}

// Shards print under the same step names at once: each shard's output is held and written apart
// (a secret split between two chunks of one shard is still masked), and says its shard.
TEST(CiJobLog, ShardsOutputIsKeptApartAndNamed) {
    test::TempDir dir;
    const std::string path = dir.path() + "/log.ndjson";
    auto log = JobLog::open(path);
    ASSERT_TRUE(log.ok());
    (*log)->set_masked({"hunter2-secret"});
    (*log)->output("test", "stdout", "shard 0 has hunt", 0);
    (*log)->output("test", "stdout", "shard 1 says hi\n", 1);
    (*log)->output("test", "stdout", "er2-secret\n", 0);
    (*log)->output("prepare", "stdout", "before the fork\n");
    (*log)->event({{"type", "end"}});
    auto text = read_file(path);
    ASSERT_TRUE(text.ok());
    std::map<int, std::string> by_shard;
    for (size_t pos = 0; pos < text->size();) {
        size_t nl = text->find('\n', pos);
        auto line = nlohmann::json::parse(text->substr(pos, nl - pos));
        pos = nl + 1;
        if (line["type"] != "output") continue;
        by_shard[line.value("shard", -1)] += line["data"].get<std::string>();
    }
    EXPECT_EQ(by_shard[0], "shard 0 has ***\n");
    EXPECT_EQ(by_shard[1], "shard 1 says hi\n");
    EXPECT_EQ(by_shard[-1], "before the fork\n") << "the job's own VM's output has no shard";
}

}  // namespace
}  // namespace kiln::ci
