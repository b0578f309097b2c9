// Functional tests of guest file operations: a 50 MB round trip, metadata calls, hostile paths.
#include "base/random.h"
#include "base/sha256.h"
#include "vm_test_env.h"

using namespace kiln;

KILN_SHARED_VM_SUITE(VmFiles);

TEST_F(VmFiles, FiftyMegabyteRandomFileRoundTripKeepsItsSha256) {
    constexpr size_t kSize = 50 * 1000 * 1000;
    auto data = random_bytes(kSize);
    ASSERT_TRUE(data.ok());
    std::string expected = sha256_hex(*data);

    auto start = Clock::now();
    auto written = agent().write_file("/tmp/kiln-big.bin", vm::source_from_string(*data), 0600);
    double write_s = std::chrono::duration<double>(Clock::now() - start).count();
    ASSERT_TRUE(written.ok()) << written.error().to_string();
    EXPECT_EQ(*written, kSize);

    auto guest_sum = sh("sha256sum /tmp/kiln-big.bin");
    EXPECT_EQ(guest_sum.stdout_data.substr(0, 64), expected);

    std::string back;
    back.reserve(kSize);
    start = Clock::now();
    auto read = agent().read_file("/tmp/kiln-big.bin", [&](std::string_view d) {
        back.append(d);
        return ok_status();
    });
    double read_s = std::chrono::duration<double>(Clock::now() - start).count();
    ASSERT_TRUE(read.ok()) << read.error().to_string();
    EXPECT_EQ(*read, kSize);
    EXPECT_EQ(sha256_hex(back), expected);
    std::printf("[ info ] 50 MB write %.2f s (%.0f MB/s), read %.2f s (%.0f MB/s)\n", write_s, 50 / write_s, read_s,
                50 / read_s);

    auto info = agent().stat("/tmp/kiln-big.bin");
    ASSERT_TRUE(info.ok()) << info.error().to_string();
    EXPECT_EQ(info->size, kSize);
    EXPECT_EQ(info->type, "file");
    EXPECT_EQ(info->mode, 0600u);
    ASSERT_TRUE(agent().remove(proto::RemoveRequest{"/tmp/kiln-big.bin", false}).ok());
}

TEST_F(VmFiles, MkdirWriteListStatRemove) {
    ASSERT_TRUE(agent().mkdir(proto::MkdirRequest{"/tmp/kiln-dir/a/b", 0750, true}).ok());
    auto written = agent().write_file("/tmp/kiln-dir/a/b/hello.txt", vm::source_from_string("hello\n"));
    ASSERT_TRUE(written.ok()) << written.error().to_string();
    auto entries = agent().list("/tmp/kiln-dir/a/b");
    ASSERT_TRUE(entries.ok()) << entries.error().to_string();
    ASSERT_EQ(entries->size(), 1u);
    EXPECT_EQ((*entries)[0].name, "hello.txt");
    EXPECT_EQ((*entries)[0].size, 6u);
    auto dir = agent().stat("/tmp/kiln-dir/a");
    ASSERT_TRUE(dir.ok());
    EXPECT_EQ(dir->type, "dir");
    EXPECT_EQ(sh("cat /tmp/kiln-dir/a/b/hello.txt").stdout_data, "hello\n");
    EXPECT_FALSE(agent().remove(proto::RemoveRequest{"/tmp/kiln-dir", false}).ok());  // not empty
    ASSERT_TRUE(agent().remove(proto::RemoveRequest{"/tmp/kiln-dir", true}).ok());
    auto gone = agent().stat("/tmp/kiln-dir");
    ASSERT_FALSE(gone.ok());
    EXPECT_EQ(gone.error().code, ErrorCode::NotFound);
}

TEST_F(VmFiles, ReadingAMissingFileIsNotFound) {
    auto read = agent().read_file("/no/such/file", [](std::string_view) { return ok_status(); });
    ASSERT_FALSE(read.ok());
    EXPECT_EQ(read.error().code, ErrorCode::NotFound);
}

TEST_F(VmFiles, HostilePathsAreInvalidArguments) {
    const std::string hostile[] = {"relative/path", "", std::string("/tmp/a\0b", 8), "/" + std::string(5000, 'a')};
    for (const auto& path : hostile) {
        SCOPED_TRACE("path of " + std::to_string(path.size()) + " bytes");
        auto st = agent().stat(path);
        ASSERT_FALSE(st.ok());
        EXPECT_EQ(st.error().code, ErrorCode::InvalidArgument);
        auto rd = agent().read_file(path, [](std::string_view) { return ok_status(); });
        ASSERT_FALSE(rd.ok());
        EXPECT_EQ(rd.error().code, ErrorCode::InvalidArgument);
        auto wr = agent().write_file(path, vm::source_from_string("x"));
        ASSERT_FALSE(wr.ok());
        EXPECT_EQ(wr.error().code, ErrorCode::InvalidArgument);
        auto ls = agent().list(path);
        ASSERT_FALSE(ls.ok());
        EXPECT_EQ(ls.error().code, ErrorCode::InvalidArgument);
        auto mk = agent().mkdir(proto::MkdirRequest{path, 0755, true});
        ASSERT_FALSE(mk.ok());
        EXPECT_EQ(mk.error().code, ErrorCode::InvalidArgument);
        auto rm = agent().remove(proto::RemoveRequest{path, true});
        ASSERT_FALSE(rm.ok());
        EXPECT_EQ(rm.error().code, ErrorCode::InvalidArgument);
    }
    auto root = agent().remove(proto::RemoveRequest{"/", true});
    ASSERT_FALSE(root.ok());
    EXPECT_EQ(root.error().code, ErrorCode::InvalidArgument);
    proto::ExecRequest bad_cwd;
    bad_cwd.argv = {"true"};
    bad_cwd.cwd = "tmp";
    auto ex = agent().exec(bad_cwd);
    ASSERT_FALSE(ex.ok());
    EXPECT_EQ(ex.error().code, ErrorCode::InvalidArgument);
    EXPECT_TRUE(agent().ping().ok());
}
