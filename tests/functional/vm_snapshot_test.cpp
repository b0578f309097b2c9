// Snapshots with real VMs: continuity across restore, 20 concurrent clones with renewed identity,
// fork, and refusal of damaged or incompatible snapshots.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/random.h"
#include "vm/guest_artifacts.h"
#include "vm/snapshot.h"
#include "vm/spare_pool.h"
#include "vm_test_env.h"

using namespace kiln;
using namespace kiln::vm;

namespace {

std::string sh(Vm& vm, const std::string& cmd) {
    proto::ExecRequest req;
    req.shell = cmd;
    req.timeout_ms = 60000;  // and 30 s more on the host: a guest that died fails the test, not hangs it
    auto out = vm.agent().exec_collect(req);
    EXPECT_TRUE(out.ok()) << (out.ok() ? "" : out.error().to_string());
    if (!out.ok()) return "";
    EXPECT_EQ(out->result.shell_status(), 0) << cmd << ": " << out->stderr_data;
    return out->stdout_data;
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

// One snapshot per test binary: a VM that counts in the background, with a tmpfs file and a disk file.
class SnapshotEnv {
public:
    static SnapshotEnv& get() {
        static SnapshotEnv env;
        return env;
    }
    const std::string& dir() const { return m_dir; }
    const std::string& failure() const { return m_failure; }

private:
    SnapshotEnv() {
        m_dir = vms_dir() + "/../test-snapshots/snap-" + random_hex(6).value();
        (void)make_dirs(vms_dir() + "/../test-snapshots");
        auto options = test::test_boot_options();
        options.snapshottable = true;
        auto vm = Vm::boot(options);
        if (!vm.ok()) {
            m_failure = vm.error().to_string();
            return;
        }
        sh(**vm, "echo tmpfs-content > /tmp/t.txt; echo disk-content > /root/d.txt; "
                 "(i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done) >/dev/null 2>&1 &");
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        SnapshotRequest req;
        req.dir = m_dir;
        req.resume = false;
        auto m = take_snapshot(**vm, req);
        if (!m.ok()) m_failure = m.error().to_string();
    }
    ~SnapshotEnv() { (void)remove_tree(m_dir); }
    std::string m_dir;
    std::string m_failure;
};

std::string copy_snapshot(const std::string& src) {
    std::string dst = src + "-copy-" + random_hex(4).value();
    EXPECT_EQ(std::system(("cp -a --reflink=auto " + src + " " + dst).c_str()), 0);
    return dst;
}

// The number of spares waiting in `pool`, once one is there or 30 s have passed.
size_t wait_for_spare(SparePool& pool) {
    auto deadline = Clock::now() + std::chrono::seconds(30);
    while (pool.pids().empty() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return pool.pids().size();
}

class SnapshotTest : public ::testing::Test {
protected:
    void SetUp() override {
        KILN_REQUIRE_VM();
        ASSERT_TRUE(SnapshotEnv::get().failure().empty()) << SnapshotEnv::get().failure();
    }
    const std::string& dir() { return SnapshotEnv::get().dir(); }

    SparePool m_spares;  // each test's own; its spares' QEMUs are killed when the test ends

    // Forks a restored parent with `request` and checks that the child starts from the parent's state
    // (tmpfs and disk as of the fork), then diverges from it and outlives it.
    void fork_and_check_divergence(const ForkRequest& request, bool expect_spare) {
        RestoreRequest req;
        req.snapshot_dir = dir();
        auto parent = restore_snapshot(req);
        ASSERT_TRUE(parent.ok()) << parent.error().to_string();
        if (expect_spare) {
            m_spares.prepare(dir());
            ASSERT_EQ(wait_for_spare(m_spares), 1u);
        }
        sh(**parent, "echo before-fork > /tmp/f.txt; echo disk-before-fork > /root/f.txt");
        ForkTimings t;
        auto child = fork_vm(**parent, request, &t);
        ASSERT_TRUE(child.ok()) << child.error().to_string();
        EXPECT_EQ(t.spare, expect_spare);
        EXPECT_EQ(trim(sh(**child, "cat /tmp/f.txt")), "before-fork");
        // The child's disk is the parent's as of the fork (its QEMU started before the parent stopped).
        // (Its page cache came with its RAM: drop it so the read reaches the disk.)
        EXPECT_EQ(trim(sh(**child, "echo 3 > /proc/sys/vm/drop_caches && cat /root/f.txt")), "disk-before-fork");
        sh(**parent, "echo parent-disk > /root/f.txt; sync");
        EXPECT_EQ(trim(sh(**child, "echo 3 > /proc/sys/vm/drop_caches && cat /root/f.txt")), "disk-before-fork");
        sh(**parent, "echo parent > /tmp/f.txt");
        sh(**child, "echo child > /tmp/f.txt");
        EXPECT_EQ(trim(sh(**parent, "cat /tmp/f.txt")), "parent");
        EXPECT_EQ(trim(sh(**child, "cat /tmp/f.txt")), "child");
        EXPECT_NE(trim(sh(**parent, "hostname")), trim(sh(**child, "hostname")));
        EXPECT_NE(sh(**parent, "head -c 32 /dev/urandom | od -An -tx1"), sh(**child, "head -c 32 /dev/urandom | od -An -tx1"));
        if (expect_spare) {
            EXPECT_EQ(trim(sh(**child, "hostname")), "kiln-" + (*child)->id());  // the spare's id
            EXPECT_EQ(wait_for_spare(m_spares), 1u);  // the next spare, started after the child was ready
            m_spares.discard(dir());
        }
        parent->reset();
        EXPECT_EQ(trim(sh(**child, "cat /tmp/f.txt; echo ok >> /tmp/f.txt; tail -1 /tmp/f.txt")), "child\nok");
    }
};

}  // namespace

TEST_F(SnapshotTest, RestoredVmContinuesWhereTheSnapshotStopped) {
    RestoreRequest req;
    req.snapshot_dir = dir();
    RestoreTimings t;
    auto vm = restore_snapshot(req, &t);
    ASSERT_TRUE(vm.ok()) << vm.error().to_string();
    EXPECT_EQ(trim(sh(**vm, "cat /tmp/t.txt")), "tmpfs-content");
    EXPECT_EQ(trim(sh(**vm, "cat /root/d.txt")), "disk-content");
    long first = std::stol(trim(sh(**vm, "cat /tmp/counter")));
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    long second = std::stol(trim(sh(**vm, "cat /tmp/counter")));
    EXPECT_GT(first, 0);
    EXPECT_GT(second, first) << "the counting process did not survive the restore";
}

TEST_F(SnapshotTest, TwentyConcurrentClonesHaveTheirOwnIdentityClockAndDisk) {
    constexpr int kClones = 20;
    std::vector<std::unique_ptr<Vm>> vms(kClones);
    std::vector<std::string> errors(kClones);
    std::vector<std::thread> threads;
    for (int i = 0; i < kClones; ++i)
        threads.emplace_back([&, i] {
            RestoreRequest req;
            req.snapshot_dir = dir();
            auto vm = restore_snapshot(req);
            if (vm.ok()) vms[i] = std::move(*vm);
            else errors[i] = vm.error().to_string();
        });
    for (auto& t : threads) t.join();
    for (int i = 0; i < kClones; ++i) ASSERT_TRUE(vms[i]) << "clone " << i << ": " << errors[i];

    std::set<std::string> random, hostnames, ids;
    for (int i = 0; i < kClones; ++i) {
        Vm& vm = *vms[i];
        random.insert(sh(vm, "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'"));
        hostnames.insert(trim(sh(vm, "hostname")));
        ids.insert(vm.id());
        // Within 1 s of the host's clock over the window in which the guest read it.
        double before = static_cast<double>(wall_clock_ns()) / 1e9;
        // busybox date has no %N; a fresh file's mtime carries the guest clock in nanoseconds.
        std::string stamp = trim(sh(vm, "touch /tmp/clock && stat -c '%Y %y' /tmp/clock"));
        double guest = std::stod(stamp.substr(0, stamp.find(' '))) +
                       std::stod("0" + stamp.substr(stamp.find('.'), 10));
        double after = static_cast<double>(wall_clock_ns()) / 1e9;
        EXPECT_GE(guest, before - 1.0) << "clone " << i << " clock is behind (read window " << after - before << " s)";
        EXPECT_LE(guest, after + 1.0) << "clone " << i << " clock is ahead (read window " << after - before << " s)";
        EXPECT_EQ(trim(sh(vm, "cat /root/d.txt")), "disk-content");
    }
    EXPECT_EQ(random.size(), size_t(kClones)) << "two clones returned the same /dev/urandom bytes";
    EXPECT_EQ(hostnames.size(), size_t(kClones));
    EXPECT_EQ(ids.size(), size_t(kClones));

    // A write in one clone is seen by no other clone and not by the snapshot.
    sh(*vms[0], "echo mine > /root/d.txt; sync");
    for (int i = 1; i < kClones; ++i) EXPECT_EQ(trim(sh(*vms[i], "cat /root/d.txt")), "disk-content");
    vms.clear();
    RestoreRequest req;
    req.snapshot_dir = dir();
    auto fresh = restore_snapshot(req);
    ASSERT_TRUE(fresh.ok()) << fresh.error().to_string();
    EXPECT_EQ(trim(sh(**fresh, "cat /root/d.txt")), "disk-content");
}

TEST_F(SnapshotTest, ForkedChildDivergesAndOutlivesItsParent) { fork_and_check_divergence(ForkRequest{}, false); }

// The parent keeps running while its RAM is copied (a live migration), so it writes memory and disk
// during the fork. The child's disk must be the parent's at the instant QEMU stopped it for the last
// pass, the instant its RAM is from: a journal or page cache ahead of or behind the disk would show
// as missing, repeated or zeroed lines once the child's cache is dropped, or as ext4 errors.
TEST_F(SnapshotTest, ForkOfABusyParentTakesItsRamAndDiskFromOneInstant) {
    RestoreRequest req;
    req.snapshot_dir = dir();
    auto parent = restore_snapshot(req);
    ASSERT_TRUE(parent.ok()) << parent.error().to_string();
    sh(**parent, "rm -f /tmp/stop /root/busy.txt; "
                 "(i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo line-$i >> /root/busy.txt; echo line-$i >> /tmp/busy.txt; "
                 "[ $((i % 10)) = 0 ] && sync; done) >/dev/null 2>&1 & "
                 "(while [ ! -e /tmp/stop ]; do dd if=/dev/urandom of=/tmp/blob bs=64k count=64 2>/dev/null; done) "
                 ">/dev/null 2>&1 & sleep 1");
    ForkTimings t;
    auto child = fork_vm(**parent, ForkRequest{}, &t);
    ASSERT_TRUE(child.ok()) << child.error().to_string();
    EXPECT_GT(t.parent_paused_ms, 0) << "QEMU's STOP and RESUME events were not read";
    for (Vm* vm : {parent->get(), child->get()}) {
        sh(*vm, "touch /tmp/stop; sleep 0.5; sync; echo 3 > /proc/sys/vm/drop_caches");
        for (const char* file : {"/root/busy.txt", "/tmp/busy.txt"}) {  // its disk, and its RAM (tmpfs)
            std::string lines = sh(*vm, std::string("cat ") + file);
            ASSERT_FALSE(lines.empty()) << file;
            EXPECT_EQ(lines.find('\0'), std::string::npos) << "zeroed blocks in " << file;
            long expected = 1;
            for (size_t pos = 0; pos < lines.size();) {
                size_t end = lines.find('\n', pos);
                if (end == std::string::npos) end = lines.size();
                ASSERT_EQ(lines.substr(pos, end - pos), "line-" + std::to_string(expected))
                    << file << " in the " << (vm == child->get() ? "child" : "parent");
                ++expected;
                pos = end + 1;
            }
            EXPECT_GT(expected, 10) << "the writer did not run before the fork";
        }
        EXPECT_EQ(trim(sh(*vm, "dmesg | grep -ci 'ext4.*error' || true")), "0") << sh(*vm, "dmesg | tail -20");
    }
}

// With a spare pool, the child is the spare QEMU started ahead for the parent's snapshot; its disk is
// still the parent's as of the fork, recloned onto the spare's once the parent stopped.
TEST_F(SnapshotTest, ForkTakesTheParentSnapshotsSpare) {
    ForkRequest request;
    request.spares = &m_spares;
    fork_and_check_divergence(request, true);
}

// With a spare pool, the next restore of the snapshot takes a QEMU started ahead, under its own id;
// a spare whose snapshot files changed since it started is not used; discard stops them all.
TEST_F(SnapshotTest, RestoreTakesASpareQemuStartedAhead) {
    RestoreRequest req;
    req.snapshot_dir = dir();
    req.spares = &m_spares;
    RestoreTimings first_t;
    auto first = restore_snapshot(req, &first_t);
    ASSERT_TRUE(first.ok()) << first.error().to_string();
    EXPECT_FALSE(first_t.spare);
    ASSERT_EQ(wait_for_spare(m_spares), 1u);

    // A restore that names its id does not take the spare (the spare has its own id).
    req.id = "named-" + random_hex(4).value();
    RestoreTimings named_t;
    auto named = restore_snapshot(req, &named_t);
    ASSERT_TRUE(named.ok()) << named.error().to_string();
    EXPECT_FALSE(named_t.spare);
    EXPECT_EQ((*named)->id(), req.id);
    named->reset();
    EXPECT_EQ(m_spares.pids().size(), 1u);

    req.id.clear();
    RestoreTimings second_t;
    auto second = restore_snapshot(req, &second_t);
    ASSERT_TRUE(second.ok()) << second.error().to_string();
    EXPECT_TRUE(second_t.spare);
    EXPECT_EQ((*second)->run_dir(), run_dir_for((*second)->id()).value());
    EXPECT_EQ(trim(sh(**second, "cat /tmp/t.txt")), "tmpfs-content");
    EXPECT_EQ(trim(sh(**second, "hostname")), "kiln-" + (*second)->id());
    EXPECT_NE(sh(**first, "head -c 32 /dev/urandom | od -An -tx1"), sh(**second, "head -c 32 /dev/urandom | od -An -tx1"));
    sh(**second, "echo spare > /root/d.txt; sync");
    EXPECT_EQ(trim(sh(**first, "cat /root/d.txt")), "disk-content");

    // A spare started before a snapshot file changed is dropped, and the restore starts its own QEMU.
    ASSERT_EQ(wait_for_spare(m_spares), 1u);
    std::string state = dir() + "/" + kStateFileName;
    ASSERT_EQ(::utimensat(AT_FDCWD, state.c_str(), nullptr, 0), 0);
    RestoreTimings third_t;
    auto third = restore_snapshot(req, &third_t);
    ASSERT_TRUE(third.ok()) << third.error().to_string();
    EXPECT_FALSE(third_t.spare);
    EXPECT_EQ(trim(sh(**third, "cat /tmp/t.txt")), "tmpfs-content");

    m_spares.discard(dir());
    EXPECT_TRUE(m_spares.pids().empty());
}

// A warm pool's spare has loaded the snapshot and run Kiln's warm-up, then stopped: a restore only
// resumes it and renews its identity. The clone still gets its own entropy, name and clock (the spare
// waited stopped meanwhile), the snapshot's tmpfs and disk as they were, and the warm-up left
// nothing behind. A fork's child needs a cold spare: the warm one is not given to it, and the fork
// queues a cold one for the next.
TEST_F(SnapshotTest, RestoreTakesAWarmSpareAndAForkTakesOnlyACold) {
    SparePool warm(/*warm=*/true);
    warm.prepare(dir());
    ASSERT_EQ(wait_for_spare(warm), 1u);
    std::this_thread::sleep_for(std::chrono::seconds(3));  // the spare's guest clock stands still meanwhile
    RestoreRequest req;
    req.snapshot_dir = dir();
    req.spares = &warm;
    RestoreTimings first_t;
    auto first = restore_snapshot(req, &first_t);
    ASSERT_TRUE(first.ok()) << first.error().to_string();
    EXPECT_TRUE(first_t.spare);
    EXPECT_TRUE(first_t.warm_spare);
    EXPECT_EQ(trim(sh(**first, "hostname")), "kiln-" + (*first)->id());
    EXPECT_EQ(trim(sh(**first, "cat /tmp/t.txt")), "tmpfs-content");
    EXPECT_EQ(trim(sh(**first, "cat /root/d.txt")), "disk-content");
    long guest_now = std::stol(trim(sh(**first, "date +%s")));
    EXPECT_LE(std::labs(guest_now - static_cast<long>(::time(nullptr))), 2L);

    ASSERT_EQ(wait_for_spare(warm), 1u);  // the next warm spare
    RestoreTimings second_t;
    auto second = restore_snapshot(req, &second_t);
    ASSERT_TRUE(second.ok()) << second.error().to_string();
    EXPECT_TRUE(second_t.warm_spare);
    EXPECT_NE(sh(**first, "head -c 32 /dev/urandom | od -An -tx1"), sh(**second, "head -c 32 /dev/urandom | od -An -tx1"));

    // The warm spare stays for restores; the fork starts its child's QEMU itself, then queues a cold spare.
    ASSERT_EQ(wait_for_spare(warm), 1u);
    ForkRequest fork_request;
    fork_request.spares = &warm;
    ForkTimings fork_t;
    auto child = fork_vm(**first, fork_request, &fork_t);
    ASSERT_TRUE(child.ok()) << child.error().to_string();
    EXPECT_FALSE(fork_t.spare);
    EXPECT_EQ(trim(sh(**child, "cat /tmp/t.txt")), "tmpfs-content");
    auto deadline = Clock::now() + std::chrono::seconds(30);
    while (warm.pids().size() < 2 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(warm.pids().size(), 2u);  // the warm one and the cold one
    ForkTimings second_fork_t;
    auto second_child = fork_vm(**second, fork_request, &second_fork_t);
    ASSERT_TRUE(second_child.ok()) << second_child.error().to_string();
    EXPECT_TRUE(second_fork_t.spare);
    warm.discard();
    EXPECT_TRUE(warm.pids().empty());
}

// The agent looks up every command on its PATH before the snapshot (cache_path_lookups): a clone
// then starts any of them without reading directory blocks or inodes from its disk. Under TCG those
// reads cost a clone's first command ~35 ms (the block layer's code, freshly translated).
TEST_F(SnapshotTest, CommandsOnThePathStartWithoutReadingTheDisk) {
    RestoreRequest req;
    req.snapshot_dir = dir();
    auto vm = restore_snapshot(req);
    ASSERT_TRUE(vm.ok()) << vm.error().to_string();
    // Field 1 of /sys/block/vda/stat: reads completed.
    auto reads = [&] { return trim(sh(**vm, "set -- $(cat /sys/block/vda/stat); echo $1")); };
    std::string before = reads();
    ASSERT_FALSE(before.empty());
    sh(**vm, "true; env true; ls /usr/bin /sbin > /dev/null; command -v cat");
    proto::ExecRequest direct;
    direct.argv = {"true"};  // found through PATH by the agent, not by a shell
    ASSERT_TRUE((*vm)->agent().exec(direct).ok());
    EXPECT_EQ(reads(), before);
}

TEST_F(SnapshotTest, DamagedOrIncompatibleSnapshotsAreRefusedAndNothingStarts) {
    auto count_vms = [] {
        auto entries = std::system(("test -d " + vms_dir()).c_str());
        (void)entries;
        int n = 0;
        for (auto& e : std::filesystem::directory_iterator(vms_dir())) (void)e, ++n;
        return n;
    };
    struct Case {
        const char* name;
        std::function<void(const std::string&)> damage;
        ErrorCode expect_code;
        const char* expect_text;
    };
    auto edit_manifest = [](const std::string& d, const std::string& from, const std::string& to, bool fix_sum) {
        std::string path = d + "/" + kManifestFileName;
        auto text = read_file(path).value();
        auto m = parse_manifest(text);
        ASSERT_TRUE(m.ok());
        if (fix_sum) {
            // Re-serialise with the field changed, so only the intended check can fire.
            SnapshotManifest changed = *m;
            if (from == "qemu") changed.qemu_version = to;
            if (from == "accel") changed.accel = to;
            ASSERT_TRUE(write_file(path, serialize_manifest(changed)).ok());
        } else {
            text.replace(text.find(from), from.size(), to);
            ASSERT_TRUE(write_file(path, text).ok());
        }
    };
    std::vector<Case> cases = {
        {"format version", [&](const std::string& d) { edit_manifest(d, "\"format_version\": 1", "\"format_version\": 9", false); },
         ErrorCode::SnapshotIncompatible, "version 9"},
        {"QEMU version", [&](const std::string& d) { edit_manifest(d, "qemu", "6.0.0", true); }, ErrorCode::SnapshotIncompatible, "6.0.0"},
        {"accelerator", [&](const std::string& d) { edit_manifest(d, "accel", "kvm", true); }, ErrorCode::SnapshotIncompatible, "kvm"},
        {"missing state", [](const std::string& d) { ::unlink((d + "/state").c_str()); }, ErrorCode::SnapshotDamaged, "missing"},
        {"truncated memory", [](const std::string& d) { (void)::truncate((d + "/memory").c_str(), 4096); }, ErrorCode::SnapshotDamaged, "truncated"},
        {"state checksum", [](const std::string& d) {
             std::fstream f(d + "/state", std::ios::in | std::ios::out | std::ios::binary);
             f.seekp(100);
             f.put('\x5a');
         }, ErrorCode::SnapshotDamaged, "SHA-256"},
        {"edited manifest", [&](const std::string& d) { edit_manifest(d, "\"vcpus\": 1", "\"vcpus\": 2", false); }, ErrorCode::SnapshotDamaged, "checksum"},
    };
    int before = count_vms();
    for (const auto& c : cases) {
        std::string copy = copy_snapshot(dir());
        c.damage(copy);
        RestoreRequest req;
        req.snapshot_dir = copy;
        auto vm = restore_snapshot(req);
        EXPECT_FALSE(vm.ok()) << c.name << " was not refused";
        if (!vm.ok()) {
            EXPECT_EQ(vm.error().code, c.expect_code) << c.name << ": " << vm.error().message;
            EXPECT_NE(vm.error().message.find(c.expect_text), std::string::npos) << c.name << ": " << vm.error().message;
        }
        (void)remove_tree(copy);
    }
    EXPECT_EQ(count_vms(), before) << "a refused restore left a run dir behind";
}
