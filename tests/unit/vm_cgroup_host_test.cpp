// VM cgroups on this host's real cgroupfs. Kiln's machines mount cgroup v1 hierarchies (memory,
// pids, cpu, ...) and a v2 tree without controllers, so HERE THESE TESTS EXERCISE CGROUP v1
// (detect_cgroups() picks v1; each test's output says which version ran). On a host with a usable
// v2 tree the same tests run on v2. The v2 decisions are tested with fixtures in
// vm_cgroup_detect_test.cpp, and V2KillAndRemove below runs the v2 removal on the controller-less
// v2 tree this host does have.
//
// Every test uses its own parent cgroup, kiln-test-<pid>, which the fixture sweeps and removes
// even when a test fails; SetUp also clears the parents of earlier test runs that died.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>

#include "base/file_util.h"
#include "vm/jail/cgroup.h"
#include "vm/jail/cgroup_fs.h"
#include "vm/jail/cgroup_parse.h"

using namespace kiln;
using namespace kiln::vm::jail;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

std::string trimmed(const std::string& path) {
    Result<std::string> text = read_cgroup_file(path);
    if (!text.ok()) return "<" + text.error().message + ">";
    std::string value = *text;
    while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
    return value;
}

bool test_root_of_dead_process(const std::string& name) {
    const std::string prefix = "kiln-test-";
    if (name.compare(0, prefix.size(), prefix) != 0) return false;
    const std::string digits = name.substr(prefix.size());
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return false;
    return std::stoi(digits) != ::getpid() && !path_exists("/proc/" + digits);
}

// A child process that joins `cgroup` the way QEMU's spawn will (raw write of "0" to each
// procs_fds() entry, nothing else between fork and joining), reports that it joined, then runs
// `body` and exits with what it returns. Returns its pid once it has joined, or -1.
template <typename Body>
pid_t spawn_in(const VmCgroup& cgroup, Body body) {
    int joined[2];
    if (::pipe(joined) != 0) return -1;
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(joined[0]);
        for (int fd : cgroup.procs_fds()) {
            if (::write(fd, "0", 1) != 1) ::_exit(90);
        }
        if (::write(joined[1], "j", 1) != 1) ::_exit(91);
        ::close(joined[1]);
        ::_exit(body());
    }
    ::close(joined[1]);
    char byte = 0;
    ssize_t n = ::read(joined[0], &byte, 1);
    ::close(joined[0]);
    if (pid < 0 || n != 1) {
        if (pid > 0) ::waitpid(pid, nullptr, 0);
        return -1;
    }
    return pid;
}

int sleep_forever() {
    while (true) ::pause();
}

// Touches `bytes` of fresh anonymous memory, a page at a time.
int touch_memory(size_t bytes) {
    void* area = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) return 92;
    volatile char* bytes_at = static_cast<volatile char*>(area);
    for (size_t i = 0; i < bytes; i += 4096) bytes_at[i] = 1;
    return 0;
}

// Exit status: 10 + how many children it could fork before fork failed with EAGAIN; 99 otherwise.
int fork_until_refused() {
    pid_t children[32];
    int made = 0;
    int refused_with = 0;
    for (int i = 0; i < 32; ++i) {
        pid_t child = ::fork();
        if (child == 0) {
            ::pause();
            ::_exit(0);
        }
        if (child < 0) {
            refused_with = errno;
            break;
        }
        children[made++] = child;
    }
    for (int i = 0; i < made; ++i) {
        ::kill(children[i], SIGKILL);
        ::waitpid(children[i], nullptr, 0);
    }
    return refused_with == EAGAIN ? 10 + made : 99;
}

// The child's exit: "exit N", "signal N".
std::string wait_for(pid_t pid) {
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid) return "waitpid failed";
    if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
    return "other";
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

class HostCgroupTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "making cgroups needs root";
        CgroupOptions options;
        options.root_name = "kiln-test-" + std::to_string(::getpid());
        Result<CgroupHost> host = detect_cgroups(options);
        ASSERT_TRUE(host.ok()) << host.error().to_string();
        m_host = *host;
        const char* version = m_host->version == CgroupVersion::V1 ? "v1" : "v2";
        RecordProperty("cgroup_version", version);
        std::printf("[ cgroup %s ] %s\n", version, m_host->describe().c_str());
        clear_dead_runs();
    }

    void TearDown() override {
        if (!m_host) return;
        Result<int> swept = sweep_cgroups(*m_host, "t-");
        EXPECT_TRUE(swept.ok()) << swept.error().to_string();
        Status removed = remove_cgroup_parent(*m_host);
        EXPECT_TRUE(removed.ok()) << removed.error().to_string();
        for (const CgroupHierarchy& hierarchy : m_host->hierarchies)
            EXPECT_FALSE(path_exists(hierarchy.parent_dir)) << hierarchy.parent_dir << " was left behind";
    }

    // Parents of test runs whose process is gone (a crashed run cannot clean up after itself).
    void clear_dead_runs() {
        for (const CgroupHierarchy& hierarchy : m_host->hierarchies) {
            Result<std::vector<std::string>> names = list_child_cgroups(hierarchy.base_dir);
            if (!names.ok()) continue;
            for (const std::string& name : *names) {
                if (!test_root_of_dead_process(name)) continue;
                CgroupOptions options;
                options.root_name = name;
                Result<CgroupHost> stale = detect_cgroups(options);
                if (!stale.ok()) continue;
                (void)sweep_cgroups(*stale, "t-");
                (void)remove_cgroup_parent(*stale);
            }
        }
    }

    std::unique_ptr<VmCgroup> make(const std::string& name, const CgroupLimits& limits) {
        Result<std::unique_ptr<VmCgroup>> cgroup = VmCgroup::create(*m_host, name, limits);
        EXPECT_TRUE(cgroup.ok()) << cgroup.error().to_string();
        return cgroup.ok() ? std::move(cgroup).value() : nullptr;
    }

    std::optional<CgroupHost> m_host;
};

}  // namespace

TEST_F(HostCgroupTest, LimitsAreWrittenAChildJoinsAndRemoveKillsItAndTheFolders) {
    CgroupLimits limits;
    limits.memory_bytes = 300 * kMiB;
    limits.pids_max = 64;
    limits.cpus = 2;
    std::unique_ptr<VmCgroup> cgroup = make("t-limits", limits);
    ASSERT_TRUE(cgroup);
    EXPECT_EQ(cgroup->describe_limits(), "memory 300 MiB, pids 64, cpu 2");
    ASSERT_EQ(cgroup->procs_fds().size(), m_host->hierarchies.size());

    // The limits, read back from the kernel's files.
    for (size_t i = 0; i < m_host->hierarchies.size(); ++i) {
        const std::vector<std::string>& controllers = m_host->hierarchies[i].controllers;
        const std::string& dir = cgroup->dirs()[i];
        auto has = [&](const char* c) { return std::find(controllers.begin(), controllers.end(), c) != controllers.end(); };
        if (m_host->version == CgroupVersion::V1) {
            if (has("memory")) {
                EXPECT_EQ(trimmed(dir + "/memory.limit_in_bytes"), "314572800");
                if (path_exists(dir + "/memory.memsw.limit_in_bytes")) {
                    EXPECT_EQ(trimmed(dir + "/memory.memsw.limit_in_bytes"), "314572800");
                }
                EXPECT_EQ(keyed_value(trimmed(dir + "/memory.oom_control"), "oom_kill_disable"), 0u);
                EXPECT_EQ(trimmed(m_host->hierarchies[i].parent_dir + "/memory.use_hierarchy"), "1");
            }
            if (has("pids")) {
                EXPECT_EQ(trimmed(dir + "/pids.max"), "64");
            }
            if (has("cpu")) {
                EXPECT_EQ(trimmed(dir + "/cpu.cfs_period_us"), "100000");
                EXPECT_EQ(trimmed(dir + "/cpu.cfs_quota_us"), "200000");
            }
        } else {
            EXPECT_EQ(trimmed(dir + "/memory.max"), "314572800");
            if (path_exists(dir + "/memory.swap.max")) {
                EXPECT_EQ(trimmed(dir + "/memory.swap.max"), "0");
            }
            EXPECT_EQ(trimmed(dir + "/pids.max"), "64");
            EXPECT_EQ(trimmed(dir + "/cpu.max"), "200000 100000");
        }
    }

    pid_t child = spawn_in(*cgroup, sleep_forever);
    ASSERT_GT(child, 0);
    // /proc/<pid>/cgroup shows it in the VM's cgroup in every hierarchy.
    std::vector<ProcCgroup> entries = parse_proc_cgroup(trimmed("/proc/" + std::to_string(child) + "/cgroup"));
    const std::string suffix = "/kiln-test-" + std::to_string(::getpid()) + "/t-limits";
    for (const CgroupHierarchy& hierarchy : m_host->hierarchies) {
        const std::string& controller = hierarchy.controllers[0];
        auto entry = std::find_if(entries.begin(), entries.end(), [&](const ProcCgroup& e) {
            if (m_host->version == CgroupVersion::V2) return e.hierarchy_id == "0";
            return std::find(e.controllers.begin(), e.controllers.end(), controller) != e.controllers.end();
        });
        ASSERT_NE(entry, entries.end()) << controller;
        EXPECT_TRUE(entry->path.size() >= suffix.size() &&
                    entry->path.compare(entry->path.size() - suffix.size(), suffix.size(), suffix) == 0)
            << controller << " " << entry->path;
    }

    Status removed = cgroup->remove();
    ASSERT_TRUE(removed.ok()) << removed.error().to_string();
    EXPECT_EQ(wait_for(child), "signal 9");
    for (const std::string& dir : cgroup->dirs()) EXPECT_FALSE(path_exists(dir)) << dir;
    EXPECT_TRUE(cgroup->procs_fds().empty());
    EXPECT_TRUE(cgroup->remove().ok());  // idempotent
    Result<bool> oom = cgroup->oom_killed();
    ASSERT_TRUE(oom.ok());
    EXPECT_FALSE(*oom);
}

TEST_F(HostCgroupTest, AChildOverItsMemoryLimitIsOomKilledAndTheCgroupSaysSo) {
    CgroupLimits small;
    small.memory_bytes = 32 * kMiB;
    small.pids_max = 16;
    std::unique_ptr<VmCgroup> cgroup = make("t-oom", small);
    ASSERT_TRUE(cgroup);
    Result<bool> before = cgroup->oom_killed();
    ASSERT_TRUE(before.ok()) << before.error().to_string();
    EXPECT_FALSE(*before);

    pid_t hog = spawn_in(*cgroup, [] { return touch_memory(200 * kMiB); });
    ASSERT_GT(hog, 0);
    EXPECT_EQ(wait_for(hog), "signal 9");  // the kernel's OOM killer, not an exit
    Result<bool> after = cgroup->oom_killed();
    ASSERT_TRUE(after.ok()) << after.error().to_string();
    EXPECT_TRUE(*after);
    ASSERT_TRUE(cgroup->remove().ok());
    Result<bool> remembered = cgroup->oom_killed();  // read by remove() before the cgroup went
    ASSERT_TRUE(remembered.ok());
    EXPECT_TRUE(*remembered);
}

TEST_F(HostCgroupTest, AChildWithinItsMemoryLimitIsNotOomKilled) {
    CgroupLimits enough;
    enough.memory_bytes = 256 * kMiB;
    enough.pids_max = 16;
    std::unique_ptr<VmCgroup> cgroup = make("t-fits", enough);
    ASSERT_TRUE(cgroup);
    pid_t child = spawn_in(*cgroup, [] { return touch_memory(64 * kMiB); });
    ASSERT_GT(child, 0);
    EXPECT_EQ(wait_for(child), "exit 0");
    Result<bool> oom = cgroup->oom_killed();
    ASSERT_TRUE(oom.ok()) << oom.error().to_string();
    EXPECT_FALSE(*oom);
}

TEST_F(HostCgroupTest, ForksBeyondPidsMaxFailWithEagain) {
    CgroupLimits limits;
    limits.memory_bytes = 128 * kMiB;
    limits.pids_max = 4;  // the child itself and three more
    std::unique_ptr<VmCgroup> cgroup = make("t-pids", limits);
    ASSERT_TRUE(cgroup);
    pid_t child = spawn_in(*cgroup, fork_until_refused);
    ASSERT_GT(child, 0);
    EXPECT_EQ(wait_for(child), "exit 13");  // three forks, then EAGAIN
}

// A hostile guest that escaped into QEMU could fork as fast as it can: remove() must still empty
// the cgroup (on v1 by killing each listed pid, round after round; pids.max bounds the rounds).
TEST_F(HostCgroupTest, RemoveEmptiesACgroupWhoseProcessesKeepForking) {
    CgroupLimits limits;
    limits.memory_bytes = 128 * kMiB;
    limits.pids_max = 16;
    std::unique_ptr<VmCgroup> cgroup = make("t-forker", limits);
    ASSERT_TRUE(cgroup);
    pid_t forker = spawn_in(*cgroup, [] {
        for (;;) (void)::fork();  // every child forks on too; EAGAIN once 16 are in the cgroup
        return 0;
    });
    ASSERT_GT(forker, 0);
    const std::string procs = cgroup->dirs()[0] + "/cgroup.procs";
    for (int i = 0; i < 200 && parse_pids(trimmed(procs)).size() < 16; ++i) ::usleep(5000);
    std::vector<int> members = parse_pids(trimmed(procs));
    EXPECT_EQ(members.size(), 16u);

    auto start = std::chrono::steady_clock::now();
    Status removed = cgroup->remove();
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    ASSERT_TRUE(removed.ok()) << removed.error().to_string();
    std::printf("[ cgroup %s ] removing 16 forking processes took %lld ms\n",
                m_host->version == CgroupVersion::V1 ? "v1" : "v2", static_cast<long long>(took.count()));
    EXPECT_EQ(wait_for(forker), "signal 9");
    for (const std::string& dir : cgroup->dirs()) EXPECT_FALSE(path_exists(dir)) << dir;
    // Every process that was in it is dead (gone, or a zombie its new parent has yet to reap).
    for (int pid : members) {
        std::string stat = trimmed("/proc/" + std::to_string(pid) + "/stat");
        size_t paren = stat.rfind(')');
        if (stat[0] == '<' || paren == std::string::npos) continue;
        EXPECT_EQ(stat.substr(paren + 2, 1), "Z") << pid << ": " << stat;
    }
}

TEST_F(HostCgroupTest, SweepRemovesOnlyPrefixedCgroupsAndKillsTheirProcesses) {
    CgroupLimits limits;
    limits.memory_bytes = 64 * kMiB;
    limits.pids_max = 8;
    std::unique_ptr<VmCgroup> first = make("t-sweep-a", limits);
    std::unique_ptr<VmCgroup> second = make("t-sweep-b", limits);
    std::unique_ptr<VmCgroup> other = make("keep-sibling", limits);
    ASSERT_TRUE(first && second && other);
    pid_t in_first = spawn_in(*first, sleep_forever);
    pid_t in_second = spawn_in(*second, sleep_forever);
    pid_t in_other = spawn_in(*other, sleep_forever);
    ASSERT_TRUE(in_first > 0 && in_second > 0 && in_other > 0);
    // A nested cgroup (which QEMU cannot make, but a leftover might hold) is removed too.
    const std::string nested = second->dirs()[0] + "/inner";
    ASSERT_TRUE(make_cgroup_dir(nested, false).ok());

    EXPECT_FALSE(sweep_cgroups(*m_host, "").ok());
    EXPECT_FALSE(sweep_cgroups(*m_host, "../t-").ok());
    Result<int> swept = sweep_cgroups(*m_host, "t-sweep-");
    ASSERT_TRUE(swept.ok()) << swept.error().to_string();
    EXPECT_EQ(*swept, 2);
    EXPECT_EQ(wait_for(in_first), "signal 9");
    EXPECT_EQ(wait_for(in_second), "signal 9");
    for (const std::string& dir : first->dirs()) EXPECT_FALSE(path_exists(dir)) << dir;
    for (const std::string& dir : second->dirs()) EXPECT_FALSE(path_exists(dir)) << dir;

    // The sibling without the prefix, and its process, are untouched.
    EXPECT_TRUE(alive(in_other));
    for (const std::string& dir : other->dirs()) EXPECT_TRUE(path_exists(dir)) << dir;
    ASSERT_TRUE(other->remove().ok());
    EXPECT_EQ(wait_for(in_other), "signal 9");
    Result<int> again = sweep_cgroups(*m_host, "t-sweep-");
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, 0);
}

TEST_F(HostCgroupTest, ANameTakenOrInvalidIsRefusedAndLeavesTheFirstAlone) {
    std::unique_ptr<VmCgroup> first = make("t-twice", CgroupLimits{});
    ASSERT_TRUE(first);
    Result<std::unique_ptr<VmCgroup>> second = VmCgroup::create(*m_host, "t-twice", CgroupLimits{});
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.error().code, ErrorCode::Conflict);
    for (const std::string& dir : first->dirs()) EXPECT_TRUE(path_exists(dir)) << dir;
    for (const char* bad : {"", "../escape", "a/b", "memory.max", "tasks"}) {
        Result<std::unique_ptr<VmCgroup>> refused = VmCgroup::create(*m_host, bad, CgroupLimits{});
        ASSERT_FALSE(refused.ok()) << bad;
        EXPECT_EQ(refused.error().code, ErrorCode::InvalidArgument);
    }
    CgroupLimits heavy;
    heavy.io_weight = 10001;
    EXPECT_FALSE(VmCgroup::create(*m_host, "t-io", heavy).ok());
}

TEST_F(HostCgroupTest, CreatePlusRemoveMedianOver50) {
    CgroupLimits limits;
    limits.memory_bytes = 512 * kMiB;
    limits.pids_max = 128;
    limits.cpus = 1;
    ASSERT_TRUE(prepare_cgroup_parent(*m_host).ok());  // once per kilnd, not per VM
    std::vector<double> micros;
    for (int i = 0; i < 50; ++i) {
        auto start = std::chrono::steady_clock::now();
        Result<std::unique_ptr<VmCgroup>> cgroup = VmCgroup::create(*m_host, "t-timed-" + std::to_string(i), limits);
        ASSERT_TRUE(cgroup.ok()) << cgroup.error().to_string();
        ASSERT_TRUE((*cgroup)->remove().ok());
        micros.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(micros.begin(), micros.end());
    const double median = (micros[24] + micros[25]) / 2;
    std::printf("[ cgroup %s ] create + remove: median %.0f us, min %.0f us, max %.0f us (50 runs)\n",
                m_host->version == CgroupVersion::V1 ? "v1" : "v2", median, micros.front(), micros.back());
    RecordProperty("create_remove_median_us", static_cast<int>(median));
    EXPECT_LT(median, 100000.0);  // a loose bound: a VM create is ~50 ms in all
}

// The v2 removal path (cgroup.kill, then rmdir) on the v2 tree this host has: it has no controllers,
// but cgroup.procs, cgroup.kill and rmdir behave as on any v2 host.
TEST(CgroupV2RemovalTest, KillAndRemoveEmptiesAV2CgroupThroughCgroupKill) {
    if (::geteuid() != 0) GTEST_SKIP() << "making cgroups needs root";
    std::vector<CgroupMount> mounts = parse_cgroup_mounts(trimmed("/proc/self/mountinfo"));
    std::vector<ProcCgroup> own = parse_proc_cgroup(trimmed("/proc/self/cgroup"));
    auto mount = std::find_if(mounts.begin(), mounts.end(), [](const CgroupMount& m) { return m.v2; });
    auto entry = std::find_if(own.begin(), own.end(), [](const ProcCgroup& p) { return p.hierarchy_id == "0"; });
    if (mount == mounts.end() || entry == own.end() || !cgroup_path_within(mount->root, entry->path))
        GTEST_SKIP() << "no cgroup2 tree here";
    const std::string dir = cgroup_dir(mount->mount_point, mount->root, entry->path) + "/kiln-test-v2-" +
                            std::to_string(::getpid());
    ASSERT_TRUE(make_cgroup_dir(dir, false).ok());
    ASSERT_TRUE(cgroup_file_exists(dir + "/cgroup.kill")) << "Linux before 5.14";

    int joined[2];
    ASSERT_EQ(::pipe(joined), 0);
    const std::string procs = dir + "/cgroup.procs";
    pid_t child = ::fork();
    if (child == 0) {
        int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ::write(fd, "0", 1) != 1) ::_exit(90);
        if (::fork() == 0) sleep_forever();  // a grandchild, in the cgroup too
        (void)!::write(joined[1], "j", 1);
        sleep_forever();
    }
    ::close(joined[1]);
    char byte = 0;
    ASSERT_EQ(::read(joined[0], &byte, 1), 1);
    ::close(joined[0]);
    EXPECT_EQ(parse_pids(trimmed(procs)).size(), 2u);

    Status removed = kill_and_remove_cgroup(dir, kCgroupEmptyBudget);
    EXPECT_TRUE(removed.ok()) << removed.error().to_string();
    EXPECT_EQ(wait_for(child), "signal 9");
    EXPECT_FALSE(path_exists(dir));
    if (path_exists(dir)) (void)kill_and_remove_cgroup(dir, kCgroupEmptyBudget);
}
