// cgroup detection and parsing from fixture text: the v2 decisions (delegated or not, a container's
// namespace root, missing controllers) are tested here without a v2 host, since Kiln's machines
// mount cgroup v1 (their v2 tree has no controllers). detect_cgroups() reads the fixture files
// through CgroupOptions::fs_root, so these run the real detection code.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/xattr.h>

#include "base/file_util.h"
#include "vm/jail/cgroup.h"
#include "vm/jail/cgroup_parse.h"

using namespace kiln;
using namespace kiln::vm::jail;

namespace {

// A folder standing in for "/": /proc/self/{mountinfo,cgroup} and cgroup folders with their files.
class FakeHost {
public:
    FakeHost() {
        char pattern[] = "/tmp/kiln-cgroup-fixture-XXXXXX";
        m_root = ::mkdtemp(pattern);
    }
    ~FakeHost() { (void)remove_tree(m_root); }
    void file(const std::string& path, const std::string& text) {
        std::string full = m_root + path;
        EXPECT_TRUE(make_dirs(full.substr(0, full.rfind('/'))).ok());
        EXPECT_TRUE(write_file(full, text).ok());
    }
    // What systemd sets on a Delegate=yes unit's cgroup; false when this filesystem refuses xattrs.
    bool mark_delegated(const std::string& path) {
        std::string full = m_root + path;
        EXPECT_TRUE(make_dirs(full).ok());
        return ::setxattr(full.c_str(), "trusted.delegate", "1", 1, 0) == 0 ||
               ::setxattr(full.c_str(), "user.delegate", "1", 1, 0) == 0;
    }
    CgroupOptions options() const {
        CgroupOptions options;
        options.fs_root = m_root;
        return options;
    }
    const std::string& root() const { return m_root; }

private:
    std::string m_root;
};

// A systemd host with only the unified hierarchy.
const char* kUnifiedMountinfo =
    "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
    "25 22 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw\n"
    "26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";

// This very machine's layout: v1 controllers, plus a v2 tree at /sys/fs/cgroup/unified with none.
const char* kHybridMountinfo =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
const char* kHybridProcCgroup =
    "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/b2eb\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

}  // namespace

TEST(CgroupParseTest, MountinfoKeepsCgroupMountsWithRootsOptionsAndEscapes) {
    std::vector<CgroupMount> mounts = parse_cgroup_mounts(
        "22 1 254:1 / / rw shared:1 - ext4 /dev/vda1 rw\n"
        "40 31 0:37 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 master:2 - cgroup cgroup "
        "rw,nosuid,cpu,cpuacct\n"
        "41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 none rw\n"
        "garbage line without a dash\n");
    ASSERT_EQ(mounts.size(), 2u);
    EXPECT_FALSE(mounts[0].v2);
    EXPECT_EQ(mounts[0].root, "/docker/abc");
    EXPECT_EQ(mounts[0].mount_point, "/sys/fs/cgroup/cpu,cpuacct");
    EXPECT_TRUE(mounts[0].has_option("cpu"));
    EXPECT_TRUE(mounts[0].has_option("cpuacct"));
    EXPECT_FALSE(mounts[0].has_option("memory"));
    EXPECT_TRUE(mounts[1].v2);
    EXPECT_EQ(mounts[1].mount_point, "/mnt/my cgroups");
}

TEST(CgroupParseTest, ProcCgroupSplitsOnlyTheFirstTwoColons) {
    std::vector<ProcCgroup> entries = parse_proc_cgroup("4:cpu,cpuacct:/a:b\n0::/system.slice/x.service\nbad\n");
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[0].controllers, (std::vector<std::string>{"cpu", "cpuacct"}));
    EXPECT_EQ(entries[0].path, "/a:b");
    EXPECT_EQ(entries[1].hierarchy_id, "0");
    EXPECT_TRUE(entries[1].controllers.empty());
    EXPECT_EQ(entries[1].path, "/system.slice/x.service");
}

TEST(CgroupParseTest, KeyedFilesPidsAndPaths) {
    const char* events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
    EXPECT_EQ(keyed_value(events, "oom_kill"), 1u);
    EXPECT_EQ(keyed_value(events, "oom"), 2u);
    EXPECT_FALSE(keyed_value(events, "oom_kil").has_value());
    EXPECT_EQ(keyed_value("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", "oom_kill"), 7u);
    EXPECT_FALSE(keyed_value("oom_kill x\n", "oom_kill").has_value());

    EXPECT_EQ(parse_pids("12\n345\n\n-1\nabc\n0\n"), (std::vector<int>{12, 345}));
    EXPECT_EQ(split_words("cpuset cpu io memory pids\n"), (std::vector<std::string>{"cpuset", "cpu", "io", "memory", "pids"}));
    EXPECT_TRUE(split_words("\n").empty());

    EXPECT_TRUE(cgroup_path_within("/", "/a"));
    EXPECT_TRUE(cgroup_path_within("/a", "/a"));
    EXPECT_TRUE(cgroup_path_within("/a", "/a/b"));
    EXPECT_FALSE(cgroup_path_within("/a", "/ab"));
    EXPECT_EQ(cgroup_dir("/sys/fs/cgroup/memory", "/", "/"), "/sys/fs/cgroup/memory");
    EXPECT_EQ(cgroup_dir("/sys/fs/cgroup/memory", "/", "/x/y"), "/sys/fs/cgroup/memory/x/y");
    EXPECT_EQ(cgroup_dir("/sys/fs/cgroup/memory", "/docker/abc", "/docker/abc/x"), "/sys/fs/cgroup/memory/x");
}

TEST(CgroupParseTest, NamesCannotClimbOrCollideWithInterfaceFiles) {
    EXPECT_TRUE(valid_cgroup_name("vm-0123abcd_x"));
    for (const char* bad : {"", ".", "..", "a/b", "../kiln", "memory.max", "cgroup.procs", "tasks", "a b"})
        EXPECT_FALSE(valid_cgroup_name(bad)) << bad;
    EXPECT_FALSE(valid_cgroup_name(std::string(129, 'a')));
}

TEST(CgroupDetectTest, V2DelegatedServiceNestsKilnsParentAndLeafUnderItsOwnCgroup) {
    FakeHost fake;
    fake.file("/proc/self/mountinfo", kUnifiedMountinfo);
    fake.file("/proc/self/cgroup", "0::/system.slice/kilnd.service\n");
    fake.file("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    const std::string service = "/sys/fs/cgroup/system.slice/kilnd.service";
    fake.file(service + "/cgroup.controllers", "cpu io memory pids\n");
    fake.file(service + "/cgroup.type", "domain\n");
    if (!fake.mark_delegated(service)) GTEST_SKIP() << "this filesystem takes no xattrs";

    Result<CgroupHost> host = detect_cgroups(fake.options());
    ASSERT_TRUE(host.ok()) << host.error().to_string();
    EXPECT_EQ(host->version, CgroupVersion::V2);
    EXPECT_TRUE(host->delegated);
    EXPECT_TRUE(host->io);
    ASSERT_EQ(host->hierarchies.size(), 1u);
    const CgroupHierarchy& h = host->hierarchies[0];
    EXPECT_EQ(h.base_dir, fake.root() + service);
    EXPECT_EQ(h.parent_dir, fake.root() + service + "/kiln");
    EXPECT_EQ(host->leaf_dir, fake.root() + service + "/kilnd");
    EXPECT_EQ(h.controllers, (std::vector<std::string>{"memory", "pids", "cpu", "io"}));
    EXPECT_NE(host->describe().find("delegated"), std::string::npos) << host->describe();

    // Once kilnd has moved itself into its leaf, detection still picks the delegated cgroup.
    fake.file("/proc/self/cgroup", "0::/system.slice/kilnd.service/kilnd\n");
    Result<CgroupHost> again = detect_cgroups(fake.options());
    ASSERT_TRUE(again.ok()) << again.error().to_string();
    EXPECT_EQ(again->hierarchies[0].parent_dir, fake.root() + service + "/kiln");
    EXPECT_EQ(again->leaf_dir, fake.root() + service + "/kilnd");
}

TEST(CgroupDetectTest, V2WithoutDelegationUsesTheTopLevelKilnCgroup) {
    FakeHost fake;
    fake.file("/proc/self/mountinfo", kUnifiedMountinfo);
    fake.file("/proc/self/cgroup", "0::/user.slice/user-0.slice/session-2.scope\n");
    fake.file("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n");
    fake.file("/sys/fs/cgroup/user.slice/user-0.slice/session-2.scope/cgroup.controllers", "cpu memory pids\n");

    Result<CgroupHost> host = detect_cgroups(fake.options());
    ASSERT_TRUE(host.ok()) << host.error().to_string();
    EXPECT_EQ(host->version, CgroupVersion::V2);
    EXPECT_FALSE(host->delegated);
    EXPECT_FALSE(host->io);
    EXPECT_TRUE(host->leaf_dir.empty());
    EXPECT_EQ(host->hierarchies[0].base_dir, fake.root() + "/sys/fs/cgroup");
    EXPECT_EQ(host->hierarchies[0].parent_dir, fake.root() + "/sys/fs/cgroup/kiln");
}

TEST(CgroupDetectTest, V2ContainerNamespaceRootIsTreatedAsDelegated) {
    // In a container with its own cgroup namespace kilnd sees "0::/" but its top has cgroup.type,
    // which the host's real root cgroup lacks: that cgroup is the container's to manage.
    FakeHost fake;
    fake.file("/proc/self/mountinfo", kUnifiedMountinfo);
    fake.file("/proc/self/cgroup", "0::/\n");
    fake.file("/sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n");
    fake.file("/sys/fs/cgroup/cgroup.type", "domain\n");

    Result<CgroupHost> host = detect_cgroups(fake.options());
    ASSERT_TRUE(host.ok()) << host.error().to_string();
    EXPECT_TRUE(host->delegated);
    EXPECT_EQ(host->leaf_dir, fake.root() + "/sys/fs/cgroup/kilnd");
    EXPECT_EQ(host->hierarchies[0].parent_dir, fake.root() + "/sys/fs/cgroup/kiln");

    // The host's real root (no cgroup.type) is not: kiln's parent is still /sys/fs/cgroup/kiln, no leaf.
    FakeHost real_root;
    real_root.file("/proc/self/mountinfo", kUnifiedMountinfo);
    real_root.file("/proc/self/cgroup", "0::/\n");
    real_root.file("/sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n");
    Result<CgroupHost> plain = detect_cgroups(real_root.options());
    ASSERT_TRUE(plain.ok()) << plain.error().to_string();
    EXPECT_FALSE(plain->delegated);
    EXPECT_EQ(plain->hierarchies[0].parent_dir, real_root.root() + "/sys/fs/cgroup/kiln");
}

TEST(CgroupDetectTest, V2MissingMemoryWithoutV1IsAClearError) {
    FakeHost fake;
    fake.file("/proc/self/mountinfo", kUnifiedMountinfo);
    fake.file("/proc/self/cgroup", "0::/system.slice/kilnd.service\n");
    const std::string service = "/sys/fs/cgroup/system.slice/kilnd.service";
    fake.file(service + "/cgroup.controllers", "cpu pids\n");
    fake.file(service + "/cgroup.type", "domain\n");
    if (!fake.mark_delegated(service)) GTEST_SKIP() << "this filesystem takes no xattrs";

    Result<CgroupHost> host = detect_cgroups(fake.options());
    ASSERT_FALSE(host.ok());
    EXPECT_EQ(host.error().code, ErrorCode::Unavailable);
    EXPECT_NE(host.error().message.find("without memory"), std::string::npos) << host.error().message;
    EXPECT_NE(host.error().message.find("no v1 hierarchy mounted for memory, pids, cpu"), std::string::npos)
        << host.error().message;
}

TEST(CgroupDetectTest, HybridHostWithAnEmptyV2TreeFallsBackToV1) {
    FakeHost fake;
    fake.file("/proc/self/mountinfo", kHybridMountinfo);
    fake.file("/proc/self/cgroup", kHybridProcCgroup);
    fake.file("/sys/fs/cgroup/unified/cgroup.controllers", "\n");

    Result<CgroupHost> host = detect_cgroups(fake.options());
    ASSERT_TRUE(host.ok()) << host.error().to_string();
    EXPECT_EQ(host->version, CgroupVersion::V1);
    ASSERT_EQ(host->hierarchies.size(), 3u);
    const std::string cg = fake.root() + "/sys/fs/cgroup";
    EXPECT_EQ(host->hierarchies[0].controllers, std::vector<std::string>{"memory"});
    EXPECT_EQ(host->hierarchies[0].own_dir, cg + "/memory/process_api/b2eb");
    EXPECT_EQ(host->hierarchies[0].parent_dir, cg + "/memory/process_api/b2eb/kiln");
    EXPECT_EQ(host->hierarchies[1].parent_dir, cg + "/pids/kiln");
    EXPECT_EQ(host->hierarchies[2].parent_dir, cg + "/cpu/kiln");
    EXPECT_NE(host->describe().find("cgroup v1: memory at"), std::string::npos) << host->describe();

    CgroupOptions test_root = fake.options();
    test_root.root_name = "kiln-test-42";
    Result<CgroupHost> named = detect_cgroups(test_root);
    ASSERT_TRUE(named.ok());
    EXPECT_EQ(named->hierarchies[1].parent_dir, cg + "/pids/kiln-test-42");
}

TEST(CgroupDetectTest, V1CoMountedControllersAndBindMountedRoots) {
    FakeHost fake;
    fake.file("/proc/self/mountinfo",
              "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
              "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
              "36 31 0:33 / /sys/fs/cgroup/memory-elsewhere rw - cgroup cgroup rw,memory\n"
              "39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n");
    fake.file("/proc/self/cgroup",
              "5:pids:/system.slice/kilnd.service\n4:memory:/docker/abc\n1:cpu,cpuacct:/system.slice/kilnd.service\n");

    Result<CgroupHost> host = detect_cgroups(fake.options());
    ASSERT_TRUE(host.ok()) << host.error().to_string();
    EXPECT_EQ(host->version, CgroupVersion::V1);
    ASSERT_EQ(host->hierarchies.size(), 3u);
    const std::string cg = fake.root() + "/sys/fs/cgroup";
    // The container's memory mount shows /docker/abc at its top: kilnd's cgroup is that top.
    EXPECT_EQ(host->hierarchies[0].parent_dir, cg + "/memory/kiln");
    EXPECT_EQ(host->hierarchies[1].parent_dir, cg + "/pids/system.slice/kilnd.service/kiln");
    EXPECT_EQ(host->hierarchies[2].parent_dir, cg + "/cpu,cpuacct/system.slice/kilnd.service/kiln");
    EXPECT_EQ(host->hierarchies[2].controllers, std::vector<std::string>{"cpu"});
}

TEST(CgroupDetectTest, NeitherVersionUsableSaysWhatEachLacks) {
    FakeHost fake;
    fake.file("/proc/self/mountinfo",
              "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
              "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
              "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
    fake.file("/proc/self/cgroup", "4:memory:/\n1:cpu:/\n0::/\n");
    fake.file("/sys/fs/cgroup/unified/cgroup.controllers", "pids\n");

    Result<CgroupHost> host = detect_cgroups(fake.options());
    ASSERT_FALSE(host.ok());
    EXPECT_EQ(host.error().code, ErrorCode::Unavailable);
    EXPECT_NE(host.error().message.find("offers [pids], without memory, cpu"), std::string::npos)
        << host.error().message;
    EXPECT_NE(host.error().message.find("no v1 hierarchy mounted for pids"), std::string::npos) << host.error().message;
}

TEST(CgroupDetectTest, RefusesRootNamesThatAreNotNames) {
    FakeHost fake;
    fake.file("/proc/self/mountinfo", kHybridMountinfo);
    fake.file("/proc/self/cgroup", kHybridProcCgroup);
    for (const char* bad : {"", "../up", "a/b", "kilnd"}) {
        CgroupOptions options = fake.options();
        options.root_name = bad;
        Result<CgroupHost> host = detect_cgroups(options);
        ASSERT_FALSE(host.ok()) << bad;
        EXPECT_EQ(host.error().code, ErrorCode::InvalidArgument);
    }
}
