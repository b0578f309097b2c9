// The free-space guard: refused below the floor (bytes or percent, whichever is larger) with
// unavailable and a message naming the shortage but no path; allowed at or above it; allowed
// when the filesystem cannot be read. Once on a real, nearly full tmpfs (as root).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/file_util.h"
#include "daemon/disk_guard.h"
#include "daemon_test_dir.h"

using namespace kiln;
using namespace kiln::daemon;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

DiskGuard::Probe fixed(uint64_t free_bytes, uint64_t total_bytes) {
    return [=](const std::string&) -> Result<DiskSpace> { return DiskSpace{free_bytes, total_bytes}; };
}

}  // namespace

TEST(DiskGuard, RefusesBelowTheByteFloorNamingTheShortageNotThePath) {
    DiskGuard guard("/srv/secret-host-path/kiln", DiskFloor{2 * kGiB, 0}, fixed(kGiB + kGiB / 2, 100 * kGiB));
    auto st = guard.check("create a sandbox");
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, ErrorCode::Unavailable);
    const std::string& m = st.error().message;
    EXPECT_NE(m.find("create a sandbox"), std::string::npos) << m;
    EXPECT_NE(m.find("1.5 GiB free"), std::string::npos) << m;
    EXPECT_NE(m.find("2.0 GiB"), std::string::npos) << m;
    EXPECT_EQ(m.find("/srv"), std::string::npos) << "a host path in: " << m;
    EXPECT_EQ(m.find("secret-host-path"), std::string::npos) << m;
    auto r = guard.read();
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->ok);
    EXPECT_EQ(r->required_free_bytes, 2 * kGiB);
}

TEST(DiskGuard, ThePercentFloorAppliesWhenItIsTheLarger) {
    // 5% of 1000 GiB is 50 GiB, above the 2 GiB byte floor: 40 GiB free is too little.
    DiskGuard guard("/d", DiskFloor{2 * kGiB, 5}, fixed(40 * kGiB, 1000 * kGiB));
    auto r = guard.read();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->required_free_bytes, 50 * kGiB);
    EXPECT_FALSE(guard.check("take a snapshot").ok());
    // On a small disk the byte floor is the larger.
    DiskGuard small("/d", DiskFloor{2 * kGiB, 5}, fixed(3 * kGiB, 10 * kGiB));
    EXPECT_TRUE(small.check("take a snapshot").ok());
    EXPECT_EQ(small.read()->required_free_bytes, 2 * kGiB);
}

TEST(DiskGuard, AllowsAtTheFloorAndWithNoFloor) {
    EXPECT_TRUE(DiskGuard("/d", DiskFloor{kGiB, 0}, fixed(kGiB, 10 * kGiB)).check("x").ok());
    EXPECT_TRUE(DiskGuard("/d", DiskFloor{0, 0}, fixed(0, 10 * kGiB)).check("x").ok());
}

TEST(DiskGuard, AnUnreadableFilesystemDoesNotStopWork) {
    DiskGuard guard("/d", DiskFloor{kGiB, 0},
                    [](const std::string&) -> Result<DiskSpace> { return make_error(ErrorCode::IoError, "statvfs failed"); });
    EXPECT_TRUE(guard.check("queue a CI job").ok());
    EXPECT_FALSE(guard.read().ok());
}

TEST(DiskGuard, StatvfsReadsTheRealFilesystem) {
    auto space = statvfs_space("/");
    ASSERT_TRUE(space.ok()) << space.error().to_string();
    EXPECT_GT(space->total_bytes, 0u);
    EXPECT_LE(space->free_bytes, space->total_bytes);
    EXPECT_FALSE(statvfs_space("/no/such/dir").ok());
}

// The guard on a real filesystem filled by a real write: a 32 MiB tmpfs, a floor of 8 MiB.
TEST(DiskGuard, ANearlyFullTmpfsIsRefusedAndAllowedAgainOnceFreed) {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
    test::TempDir dir;
    if (::mount("tmpfs", dir.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=32m,mode=0700") != 0)
        GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
    struct Unmount {
        std::string path;
        ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
    } unmount{dir.path()};
    DiskGuard guard(dir.path(), DiskFloor{8 * kMiB, 0});
    ASSERT_TRUE(guard.check("create a sandbox").ok()) << "an empty 32 MiB tmpfs has room";
    // 28 MiB of data leaves about 4 MiB free.
    const std::string filler = dir.path() + "/filler";
    ASSERT_TRUE(write_file(filler, std::string(28 * kMiB, 'x'), 0600).ok());
    auto st = guard.check("create a sandbox");
    ASSERT_FALSE(st.ok()) << "28 of 32 MiB used, yet allowed";
    EXPECT_EQ(st.error().code, ErrorCode::Unavailable);
    EXPECT_EQ(st.error().message.find(dir.path()), std::string::npos) << st.error().message;
    auto r = guard.read();
    ASSERT_TRUE(r.ok());
    EXPECT_LT(r->space.free_bytes, 8 * kMiB);
    EXPECT_EQ(r->space.total_bytes, 32 * kMiB);
    ASSERT_EQ(::unlink(filler.c_str()), 0);
    EXPECT_TRUE(guard.check("create a sandbox").ok()) << "freed, yet still refused";
}
