// The jail around real QEMUs (issue 14): a restored VM's QEMU and a spare's, read from /proc, and
// a helper run inside a VM's jail and namespaces as its uid, which must reach nothing of the host.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "base/file_util.h"
#include "base/random.h"
#include "base/unique_fd.h"
#include "vm/guest_artifacts.h"
#include "vm/jail/cgroup.h"
#include "vm/jail/jail_settings.h"
#include "vm/jail/vm_cgroups.h"
#include "vm/jail/uid_lease.h"
#include "vm/snapshot.h"
#include "vm/spare_pool.h"
#include "../proc_view.h"
#include "vm_test_env.h"

using namespace kiln;
using namespace kiln::vm;

namespace {

// Runs `script` with /bin/sh inside the namespaces and root of `pid`, as `uid`: its exit status.
int run_inside(pid_t pid, uid_t uid, const std::string& script) {
    std::string cmd = "nsenter -t " + std::to_string(pid) + " -m -n -p -i -u -r -S " + std::to_string(uid) + " -G " +
                      std::to_string(uid) + " -- /usr/bin/sh -c '" + script + "' >/dev/null 2>&1";
    int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// One snapshot for this file's tests.
class JailTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (test::vm_unavailable_reason()) return;
        s_dir = vms_dir() + "/../test-snapshots/jail-" + random_hex(6).value();
        (void)make_dirs(vms_dir() + "/../test-snapshots");
        auto options = test::test_boot_options();
        options.snapshottable = true;
        auto vm = Vm::boot(options);
        if (!vm.ok()) {
            s_failure = vm.error().to_string();
            return;
        }
        SnapshotRequest req;
        req.dir = s_dir;
        req.resume = false;
        if (auto m = take_snapshot(**vm, req); !m.ok()) s_failure = m.error().to_string();
    }
    static void TearDownTestSuite() {
        if (!s_dir.empty()) (void)remove_tree(s_dir);
    }
    void SetUp() override {
        KILN_REQUIRE_VM();
        ASSERT_TRUE(s_failure.empty()) << s_failure;
        ASSERT_EQ(::geteuid(), 0u) << "the jail needs root";
    }
    std::unique_ptr<Vm> restore() {
        RestoreRequest req;
        req.snapshot_dir = s_dir;
        auto vm = restore_snapshot(req);
        EXPECT_TRUE(vm.ok()) << (vm.ok() ? "" : vm.error().to_string());
        return vm.ok() ? std::move(*vm) : nullptr;
    }
    static std::string s_dir;
    static std::string s_failure;
};
std::string JailTest::s_dir;
std::string JailTest::s_failure;

}  // namespace

TEST_F(JailTest, ARestoredVmsQemuAndASparesRunConfined) {
    // A secret in this process's environment must not reach any QEMU.
    ::setenv("KILN_CI_SECRET_JAILTEST", "do-not-leak", 1);
    auto vm = restore();
    ASSERT_TRUE(vm);
    SparePool spares;
    spares.prepare(s_dir);
    auto deadline = Clock::now() + std::chrono::seconds(30);
    while (spares.pids().empty() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_EQ(spares.pids().size(), 1u);
    ::unsetenv("KILN_CI_SECRET_JAILTEST");
    std::vector<pid_t> pids = {vm->pid(), spares.pids()[0]};
    std::set<std::string> uids;
    for (pid_t pid : pids) {
        SCOPED_TRACE("QEMU pid " + std::to_string(pid));
        // Real, effective, saved and filesystem ids: none may be root. Compare whole fields, since
        // a jail uid such as 2000000050 contains "0\t" as a substring.
        std::string uid = test::status_field(pid, "Uid");
        for (const std::string& id : test::status_ids(uid)) EXPECT_NE(id, "0") << uid;
        uids.insert(uid);
        std::string gid = test::status_field(pid, "Gid");
        for (const std::string& id : test::status_ids(gid)) EXPECT_NE(id, "0") << gid;
        EXPECT_EQ(test::status_field(pid, "CapEff"), "0000000000000000");
        EXPECT_EQ(test::status_field(pid, "CapPrm"), "0000000000000000");
        EXPECT_EQ(test::status_field(pid, "CapBnd"), "0000000000000000");
        EXPECT_EQ(test::status_field(pid, "NoNewPrivs"), "1");
        EXPECT_EQ(test::status_field(pid, "Seccomp"), "2");
        EXPECT_EQ(test::status_field(pid, "Seccomp_filters"), "2") << "Kiln's filter and QEMU's own";
        auto env = read_file("/proc/" + std::to_string(pid) + "/environ", 1 << 16);
        ASSERT_TRUE(env.ok());
        EXPECT_EQ(env->find("KILN_"), std::string::npos);
        EXPECT_EQ(env->find("do-not-leak"), std::string::npos);
        for (const char* ns : {"mnt", "pid", "net", "ipc", "uts"})
            EXPECT_NE(test::namespace_of(std::to_string(pid), ns), test::namespace_of("self", ns)) << ns;
        // Of the data dir, its root holds only the path down to its own jail dir.
        std::string root = "/proc/" + std::to_string(pid) + "/root";
        EXPECT_TRUE(path_exists(root + data_dir() + "/vms"));
        EXPECT_FALSE(path_exists(root + data_dir() + "/kilnd.db"));
        EXPECT_FALSE(path_exists(root + data_dir() + "/snapshots"));
        EXPECT_FALSE(path_exists(root + s_dir));
        EXPECT_TRUE(path_exists("/proc/" + std::to_string(pid) + "/root/usr/bin"));
        // Its own cgroup (v1 on these machines: memory, pids and cpu hierarchies) and its limits.
        auto cgroups = read_file("/proc/" + std::to_string(pid) + "/cgroup", 1 << 16);
        ASSERT_TRUE(cgroups.ok());
        const jail::CgroupHost* host = *jail::cgroup_host();
        for (const auto& h : host->hierarchies) {
            std::string relative = h.parent_dir.substr(h.mount_point.size());
            EXPECT_NE(cgroups->find(relative + "/" + jail::cgroup_prefix()), std::string::npos)
                << "in " << h.mount_point << ": " << *cgroups;
        }
        auto limits_of = jail::vm_cgroup_limits(256, 1, 128);
        std::string memory_dir;
        for (const auto& h : host->hierarchies)
            for (const auto& c : h.controllers)
                if (c == "memory") memory_dir = h.mount_point;
        size_t at = cgroups->find(":memory:");
        if (host->version == jail::CgroupVersion::V1 && at != std::string::npos) {
            std::string path = cgroups->substr(at + 8, cgroups->find('\n', at) - at - 8);
            auto limit = read_file(memory_dir + path + "/memory.limit_in_bytes", 64);
            ASSERT_TRUE(limit.ok());
            EXPECT_EQ(std::stoull(*limit), limits_of.memory_bytes) << "guest RAM + TCG cache + overhead";
        }
        auto limits = read_file("/proc/" + std::to_string(pid) + "/limits", 1 << 16);
        ASSERT_TRUE(limits.ok());
        EXPECT_NE(limits->find("Max core file size        0"), std::string::npos) << *limits;
    }
    EXPECT_EQ(uids.size(), 2u) << "each QEMU has its own uid";
    EXPECT_NE(test::namespace_of(std::to_string(pids[0]), "net"), test::namespace_of(std::to_string(pids[1]), "net"));
    // The restored VM still works, of course.
    proto::ExecRequest req;
    req.shell = "echo jailed";
    auto out = vm->agent().exec_collect(req);
    ASSERT_TRUE(out.ok()) << out.error().to_string();
    EXPECT_EQ(out->stdout_data, "jailed\n");
}

TEST_F(JailTest, AHelperInsideAVmsJailReachesNothingOfTheHost) {
    auto a = restore();
    auto b = restore();
    ASSERT_TRUE(a && b);
    uid_t uid = a->jail_uid();
    ASSERT_NE(uid, 0u);
    // A host file like kilnd.db, and a listening TCP port on the host's loopback.
    std::string db = data_dir() + "/jail-test-" + random_hex(4).value() + ".db";
    ASSERT_TRUE(write_file(db, "secret").ok());
    UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener.get(), 4), 0);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    std::string port = std::to_string(ntohs(addr.sin_port));
    std::string connect = "/usr/bin/python3 -c \"import socket; socket.create_connection((\\\"127.0.0.1\\\", " + port + "), 2)\"";

    // Controls: the same commands work where they should, so a failure below means the jail.
    EXPECT_EQ(std::system((connect + " >/dev/null 2>&1").c_str()), 0) << "the port answers on the host";
    EXPECT_EQ(run_inside(a->pid(), uid, "test -r " + a->paths().disk), 0) << "its own disk is its own";

    EXPECT_NE(run_inside(a->pid(), uid, "cat " + db), 0) << "a host file in the data dir";
    EXPECT_NE(run_inside(a->pid(), uid, "cat " + b->paths().disk), 0) << "another VM's disk";
    EXPECT_NE(run_inside(a->pid(), uid, "cat " + s_dir + "/memory"), 0) << "the snapshot's memory file";
    EXPECT_EQ(run_inside(a->pid(), uid, "test \"$(ls -A " + data_dir() + ")\" = vms && test \"$(ls -A " + vms_dir() +
                                            ")\" = " + a->id()),
              0)
        << "of the data dir, only the way down to its own jail dir";
    EXPECT_NE(run_inside(a->pid(), uid, connect), 0) << "a port on the host's loopback";
    EXPECT_NE(run_inside(a->pid(), uid, "touch /usr/bin/evil"), 0) << "the root is read-only";
    EXPECT_EQ(run_inside(a->pid(), uid, "grep -q " + a->run_dir() + " /proc/1/cmdline"), 0) << "its QEMU is its PID 1";
    // ("qemu-syste[m]" does not match this very script's command line.)
    EXPECT_EQ(run_inside(a->pid(), uid, "test \"$(grep -l qemu-syste[m] /proc/[0-9]*/cmdline)\" = /proc/1/cmdline"), 0)
        << "no other QEMU (the other VM's) in its PID namespace";
    (void)::unlink(db.c_str());
}

TEST_F(JailTest, TheJailGoesWithTheVm) {
    auto vm = restore();
    ASSERT_TRUE(vm);
    uid_t uid = vm->jail_uid();
    std::string run_dir = vm->run_dir();
    jail::JailSettings settings = jail::jail_settings();
    EXPECT_TRUE(jail::uid_leased(settings.lock_dir, uid));
    const jail::CgroupHost* host = *jail::cgroup_host();
    std::vector<std::string> cgroup_dirs;
    for (const auto& h : host->hierarchies) cgroup_dirs.push_back(h.parent_dir + "/" + jail::cgroup_prefix() + vm->id());
    for (const auto& dir : cgroup_dirs) EXPECT_TRUE(path_exists(dir)) << dir;
    vm->destroy();
    EXPECT_FALSE(jail::uid_leased(settings.lock_dir, uid)) << "the uid is free once QEMU is gone";
    EXPECT_FALSE(path_exists(run_dir));
    for (const auto& dir : cgroup_dirs) EXPECT_FALSE(path_exists(dir)) << dir;
}
