// Unit tests for disk cloning and the guest artifact checks (paths from env, ext4 magic, kernel format).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file_util.h"
#include "vm/disk_clone.h"
#include "vm/guest_artifacts.h"

using namespace kiln;
using namespace kiln::vm;

namespace {

std::string temp_dir() {
    char tmpl[] = "/tmp/kiln-disk-test-XXXXXX";
    return ::mkdtemp(tmpl) ? tmpl : "/tmp";
}

// Sets an environment variable for the scope of a test.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const std::string& value) : m_name(name) {
        if (const char* old = ::getenv(name)) m_old = old;
        ::setenv(name, value.c_str(), 1);
    }
    ~ScopedEnv() {
        if (m_old) ::setenv(m_name, m_old->c_str(), 1);
        else ::unsetenv(m_name);
    }

private:
    const char* m_name;
    std::optional<std::string> m_old;
};

void write_at(const std::string& path, off_t offset, const std::string& data) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, data.data(), data.size(), offset), static_cast<ssize_t>(data.size()));
    ::close(fd);
}

}  // namespace

TEST(DiskClone, ClonesContentAndKeepsHoles) {
    std::string dir = temp_dir();
    std::string src = dir + "/src.img";
    ASSERT_TRUE(write_file(src, "").ok());
    ASSERT_EQ(::truncate(src.c_str(), 64 << 20), 0);
    write_at(src, 0, "start");
    write_at(src, 32 << 20, "middle");
    write_at(src, (64 << 20) - 3, "end");
    auto method = clone_file(src, dir + "/dst.img");
    ASSERT_TRUE(method.ok()) << method.error().to_string();
    auto a = read_file(src, 128 << 20), b = read_file(dir + "/dst.img", 128 << 20);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_TRUE(*a == *b);
    struct stat st;
    ASSERT_EQ(::stat((dir + "/dst.img").c_str(), &st), 0);
    EXPECT_LT(st.st_blocks * 512, 8 << 20) << "holes were filled by " << clone_method_name(*method);
    // The destination must not exist yet.
    EXPECT_FALSE(clone_file(src, dir + "/dst.img").ok());
    EXPECT_FALSE(clone_file(dir + "/missing", dir + "/x.img").ok());
    EXPECT_FALSE(path_exists(dir + "/x.img"));
    auto reflink = can_reflink(dir);
    ASSERT_TRUE(reflink.ok());
    EXPECT_EQ(*reflink, *method == CloneMethod::Reflink);
    (void)remove_tree(dir);
}

TEST(GuestArtifacts, Ext4MagicIsChecked) {
    std::string dir = temp_dir();
    write_at(dir + "/good.ext4", 1080, "\x53\xEF");
    write_at(dir + "/good.ext4", 4095, "x");
    EXPECT_TRUE(check_ext4_image(dir + "/good.ext4").ok());
    write_at(dir + "/zero.ext4", 4095, "x");
    auto bad = check_ext4_image(dir + "/zero.ext4");
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().code, ErrorCode::ImageCorrupt);
    write_at(dir + "/short.ext4", 0, "tiny");
    EXPECT_EQ(check_ext4_image(dir + "/short.ext4").error().code, ErrorCode::ImageCorrupt);
    (void)remove_tree(dir);
}

TEST(GuestArtifacts, KernelAndImagesAreFoundThroughTheCacheRoot) {
    std::string dir = temp_dir();
    ScopedEnv cache("KILN_CACHE", dir);
    ScopedEnv no_kernel("KILN_KERNEL", "");
    auto missing = find_kernel();
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ErrorCode::KernelMissing);
    EXPECT_NE(missing.error().message.find(dir + "/kernel/vmlinux"), std::string::npos);
    EXPECT_NE(missing.error().message.find("make images"), std::string::npos);

    ASSERT_TRUE(make_dirs(dir + "/kernel-abc").ok());
    write_at(dir + "/kernel-abc/vmlinux", 0, "\x7f" "ELF rest of a kernel");
    ASSERT_TRUE(write_file(dir + "/kernel-abc/release", "6.1.0-kiln\n").ok());
    ASSERT_EQ(::symlink("kernel-abc", (dir + "/kernel").c_str()), 0);
    auto kernel = find_kernel();
    ASSERT_TRUE(kernel.ok()) << kernel.error().to_string();
    EXPECT_EQ(kernel->release, "6.1.0-kiln");

    write_at(dir + "/not-a-kernel", 0, "#!/bin/sh\n");
    ScopedEnv env_kernel("KILN_KERNEL", dir + "/not-a-kernel");
    EXPECT_EQ(find_kernel().error().code, ErrorCode::KernelInvalid);

    EXPECT_EQ(find_image("tiny").error().code, ErrorCode::ImageMissing);
    ASSERT_TRUE(make_dirs(dir + "/images/tiny").ok());
    write_at(dir + "/images/tiny/rootfs.ext4", 1080, "\x53\xEF");
    EXPECT_TRUE(find_image("tiny").ok());
    ASSERT_TRUE(make_dirs(dir + "/images/broken").ok());
    write_at(dir + "/images/broken/rootfs.ext4", 2000, "x");
    EXPECT_EQ(find_image("broken").error().code, ErrorCode::ImageCorrupt);
    EXPECT_EQ(list_images(), (std::vector<std::string>{"broken", "tiny"}));
    for (const char* bad : {"../etc", "a/b", "", ".hidden"}) EXPECT_FALSE(find_image(bad).ok()) << bad;
    (void)remove_tree(dir);
}

TEST(GuestArtifacts, RunDirsKeepSocketPathsShort) {
    ScopedEnv data("KILN_DATA_DIR", "/var/lib/kiln");
    auto dir = run_dir_for("0123456789ab");
    ASSERT_TRUE(dir.ok());
    EXPECT_EQ(*dir, "/var/lib/kiln/vms/0123456789ab");
    EXPECT_FALSE(run_dir_for("../x").ok());
    EXPECT_FALSE(run_dir_for("").ok());
    ScopedEnv long_data("KILN_DATA_DIR", "/" + std::string(100, 'd'));
    auto too_long = run_dir_for("0123456789ab");
    ASSERT_FALSE(too_long.ok());
    EXPECT_NE(too_long.error().message.find("KILN_DATA_DIR"), std::string::npos);
}
