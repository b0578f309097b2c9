// The jail's parts on their own, as root, with real processes: sealed memory, uid leases, and a
// jailed child's uid, capabilities, seccomp, namespaces, root and environment. (The VM tests
// check the same of real QEMUs: tests/functional/vm_jail_test.cpp.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "base/file_util.h"
#include "../proc_view.h"
#include "vm/jail/jail_spawn.h"
#include "vm/jail/uid_lease.h"
#include "vm/sealed_memory.h"

using namespace kiln;
using namespace kiln::vm;

namespace {

std::string make_temp_dir() {
    char dir[] = "/tmp/kiln-jail-test-XXXXXX";
    EXPECT_NE(::mkdtemp(dir), nullptr);
    return dir;
}

jail::JailSpec shell_spec(uid_t uid, const std::string& script) {
    jail::JailSpec spec;
    spec.uid = uid;
    spec.gid = uid;
    spec.argv = {"/usr/bin/sh", "-c", script};
    return spec;
}

}  // namespace

TEST(SealedMemory, HoldsTheFileAndRefusesEveryWriteButPrivateMaps) {
    std::string dir = make_temp_dir();
    std::string path = dir + "/memory";
    {
        UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT, 0600));
        ASSERT_TRUE(fd);
        ASSERT_EQ(::ftruncate(fd.get(), 8 << 20), 0);
        ASSERT_EQ(::pwrite(fd.get(), "kiln", 4, 3 << 20), 4);  // one data extent among holes
    }
    auto sealed = sealed_memory_for(path);
    ASSERT_TRUE(sealed.ok()) << sealed.error().to_string();
    int fd = (*sealed)->fd();
    EXPECT_EQ((*sealed)->size(), uint64_t(8) << 20);
    char buf[4] = {};
    ASSERT_EQ(::pread(fd, buf, 4, 3 << 20), 4);
    EXPECT_EQ(std::string(buf, 4), "kiln");
    EXPECT_EQ(::pwrite(fd, "evil", 4, 0), -1);
    EXPECT_EQ(errno, EPERM);
    EXPECT_EQ(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), MAP_FAILED);
    EXPECT_EQ(::ftruncate(fd, 1 << 20), -1);
    // A private writable map works, and its writes stay in it.
    void* map = ::mmap(nullptr, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    ASSERT_NE(map, MAP_FAILED);
    std::memcpy(static_cast<char*>(map) + (3 << 20), "mine", 4);
    ::munmap(map, 4 << 20);
    ASSERT_EQ(::pread(fd, buf, 4, 3 << 20), 4);
    EXPECT_EQ(std::string(buf, 4), "kiln");
    // Reopened by path (as QEMU does through /proc/self/fd/N) read-write: still sealed.
    UniqueFd reopened(::open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDWR));
    ASSERT_TRUE(reopened);
    EXPECT_EQ(::pwrite(reopened.get(), "evil", 4, 0), -1);
    // One memfd per file while it is used; a changed file gets a new one.
    auto again = sealed_memory_for(path);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->get(), sealed->get());
    {
        UniqueFd w(::open(path.c_str(), O_WRONLY));
        ASSERT_EQ(::pwrite(w.get(), "new!", 4, 3 << 20), 4);
        struct timespec times[2] = {{0, UTIME_OMIT}, {12345, 0}};
        ASSERT_EQ(::futimens(w.get(), times), 0);
    }
    auto changed = sealed_memory_for(path);
    ASSERT_TRUE(changed.ok());
    EXPECT_NE(changed->get(), sealed->get());
    (void)remove_tree(dir);
}

TEST(UidLease, LeasesAreExclusiveAcrossHoldersAndFreedWithThem) {
    std::string dir = make_temp_dir();
    jail::UidRange range{3000000000u, 2};
    auto a = jail::UidLease::take(range, dir);
    auto b = jail::UidLease::take(range, dir);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_NE((*a)->uid(), (*b)->uid());
    EXPECT_TRUE(jail::uid_leased(dir, (*a)->uid()));
    auto c = jail::UidLease::take(range, dir);
    ASSERT_FALSE(c.ok()) << "the range holds two";
    EXPECT_EQ(c.error().code, ErrorCode::ResourceExhausted);
    uid_t freed = (*a)->uid();
    a->reset();
    EXPECT_FALSE(jail::uid_leased(dir, freed));
    auto d = jail::UidLease::take(range, dir);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ((*d)->uid(), freed);
    // The QEMU's copy of its lock keeps the uid leased after the owner lets go (a kill -9'd kilnd).
    int inherited = ::dup((*d)->qemu_lock_fd());
    d->reset();
    EXPECT_TRUE(jail::uid_leased(dir, freed));
    ::close(inherited);
    EXPECT_FALSE(jail::uid_leased(dir, freed));
    (void)remove_tree(dir);
}

TEST(JailSpawn, TheChildHasNoPrivilegeNoEnvironmentAndItsOwnNamespaces) {
    if (::geteuid() != 0) GTEST_SKIP() << "the jail needs root";
    ::setenv("KILN_TEST_SECRET", "hunter2", 1);
    auto spec = shell_spec(3000000100u, "");
    spec.argv = {"/usr/bin/sleep", "30"};
    auto child = jail::spawn_jailed(spec);
    ::unsetenv("KILN_TEST_SECRET");
    ASSERT_TRUE(child.ok()) << child.error().to_string();
    pid_t pid = (*child)->pid();
    for (int i = 0; i < 200 && test::status_field(pid, "Name") != "sleep"; ++i) ::usleep(10000);  // exec'd
    EXPECT_EQ(test::status_field(pid, "Uid"), "3000000100\t3000000100\t3000000100\t3000000100");
    EXPECT_EQ(test::status_field(pid, "Gid"), "3000000100\t3000000100\t3000000100\t3000000100");
    EXPECT_EQ(test::status_field(pid, "Groups"), "");
    EXPECT_EQ(test::status_field(pid, "CapEff"), "0000000000000000");
    EXPECT_EQ(test::status_field(pid, "CapPrm"), "0000000000000000");
    EXPECT_EQ(test::status_field(pid, "CapBnd"), "0000000000000000");
    EXPECT_EQ(test::status_field(pid, "NoNewPrivs"), "1");
    EXPECT_EQ(test::status_field(pid, "Seccomp"), "2");
    auto env = read_file("/proc/" + std::to_string(pid) + "/environ", 1 << 16);
    ASSERT_TRUE(env.ok());
    EXPECT_EQ(*env, "") << "no environment at all";
    for (const char* ns : {"mnt", "pid", "net", "ipc", "uts"})
        EXPECT_NE(test::namespace_of(std::to_string(pid), ns), test::namespace_of("self", ns)) << ns;
    char root[64] = {};
    EXPECT_GT(::readlink(("/proc/" + std::to_string(pid) + "/root").c_str(), root, sizeof root - 1), 0);
    struct stat jail_root {}, host_root {};
    ASSERT_EQ(::stat(("/proc/" + std::to_string(pid) + "/root/").c_str(), &jail_root), 0);
    ASSERT_EQ(::stat("/", &host_root), 0);
    EXPECT_FALSE(jail_root.st_dev == host_root.st_dev && jail_root.st_ino == host_root.st_ino) << "not the host's /";
    (*child)->kill_and_reap();
}

TEST(JailSpawn, InsideItSeesOnlyWhatItIsGivenAndCannotWidenItself) {
    if (::geteuid() != 0) GTEST_SKIP() << "the jail needs root";
    std::string dir = make_temp_dir();
    ASSERT_EQ(::chown(dir.c_str(), 3000000101u, 3000000101u), 0);
    // Every line must hold, or the shell exits with the failing line's number.
    std::string script =
        "n=1; check() { if ! eval \"$1\" >/dev/null 2>&1; then exit $n; fi; n=$((n+1)); };"
        "check 'test ! -e /etc/passwd';"            // 1: no host /etc beyond the loader cache
        "check 'test ! -e /var/lib';"               // 2: no data dir
        "check 'test ! -e /work';"                  // 3
        "check 'test $$ = 1';"                      // 4: PID 1 of its own PID namespace
        "check 'touch " + dir + "/mine';"           // 5: its own dir is writable
        "check '! touch /usr/evil';"                // 6: the rest is read-only
        "check '! touch /newfile';"                 // 7
        "check 'test \"$(id -u)\" = 3000000101';"   // 8
        "check '! unshare -U true';"                // 9: no user namespace (seccomp)
        "check '! unshare -n true';"                // 10
        "check 'test \"$(hostname)\" = kiln-jail';" // 11: its own UTS namespace
        "exit 0";
    auto spec = shell_spec(3000000101u, script);
    spec.binds.push_back({dir, true});
    auto child = jail::spawn_jailed(spec);
    ASSERT_TRUE(child.ok()) << child.error().to_string();
    auto status = (*child)->wait_for(Millis(20000));
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(status->exit_code, 0) << "check number " << status->exit_code << " failed";
    EXPECT_TRUE(path_exists(dir + "/mine"));
    (void)remove_tree(dir);
}

// kilnd with ~100 VMs holds more descriptors than a jailed QEMU's max_open_files: the child, a
// copy of that table until its exec, must still set up its stdio and keep the fds it is given
// (numbered above its limit), and run under the limit.
TEST(JailSpawn, AParentWithMoreOpenFilesThanTheChildsLimitStillSpawns) {
    if (::geteuid() != 0) GTEST_SKIP() << "the jail needs root";
    constexpr int kLimit = 64;
    std::vector<int> filler;
    for (int i = 0; i < kLimit + 100; ++i) filler.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_GE(filler.back(), kLimit + 100);
    int kept = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GT(kept, kLimit);
    auto spec = shell_spec(3000000103u, "");
    spec.argv = {"/usr/bin/sleep", "30"};
    spec.max_open_files = kLimit;
    spec.keep_fds = {kept};
    auto child = jail::spawn_jailed(spec);
    for (int fd : filler) ::close(fd);
    ::close(kept);
    ASSERT_TRUE(child.ok()) << child.error().to_string();
    pid_t pid = (*child)->pid();
    for (int i = 0; i < 200 && test::status_field(pid, "Name") != "sleep"; ++i) ::usleep(10000);  // exec'd
    std::string proc = "/proc/" + std::to_string(pid);
    EXPECT_TRUE(path_exists(proc + "/fd/" + std::to_string(kept))) << "the kept fd, above the limit";
    EXPECT_FALSE(path_exists(proc + "/fd/" + std::to_string(filler.front()))) << "the parent's others are closed";
    std::ifstream limits(proc + "/limits");
    std::string line, files_line;
    while (std::getline(limits, line))
        if (line.rfind("Max open files", 0) == 0) files_line = line;
    std::istringstream fields(files_line.substr(std::string("Max open files").size()));
    std::string soft, hard;
    fields >> soft >> hard;
    EXPECT_EQ(soft, std::to_string(kLimit)) << files_line;
    EXPECT_EQ(hard, std::to_string(kLimit)) << files_line;
    (*child)->kill_and_reap();
}

TEST(JailSpawn, AFailedStepIsNamedAndLeavesNoProcess) {
    if (::geteuid() != 0) GTEST_SKIP() << "the jail needs root";
    auto spec = shell_spec(3000000102u, "true");
    spec.argv[0] = "/usr/bin/no-such-binary";
    auto child = jail::spawn_jailed(spec);
    ASSERT_FALSE(child.ok());
    EXPECT_NE(child.error().message.find("exec"), std::string::npos) << child.error().message;
    spec = shell_spec(0, "true");
    EXPECT_FALSE(jail::spawn_jailed(spec).ok()) << "uid 0 is refused";
}
