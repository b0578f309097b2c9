// Functional tests of a VM's life: boot errors, panics, QEMU dying, shutdown, and no leaks over many boots.
#include <dirent.h>
#include <signal.h>

#include <fstream>
#include <thread>

#include "base/file_util.h"
#include "base/random.h"
#include "vm/disk_clone.h"
#include "vm_test_env.h"

using namespace kiln;

namespace {

class VmLifecycle : public ::testing::Test {
protected:
    void SetUp() override { KILN_REQUIRE_VM(); }

    std::unique_ptr<vm::Vm> boot() {
        auto booted = vm::Vm::boot(test::test_boot_options());
        EXPECT_TRUE(booted.ok()) << booted.error().to_string();
        return booted.ok() ? std::move(*booted) : nullptr;
    }
};

// QEMU processes whose command line mentions `needle`, found through /proc.
std::vector<std::string> processes_mentioning(const std::string& needle) {
    std::vector<std::string> found;
    DIR* proc = opendir("/proc");
    if (!proc) return found;
    while (struct dirent* e = readdir(proc)) {
        std::string pid = e->d_name;
        if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
        auto cmdline = read_file("/proc/" + pid + "/cmdline", 1 << 20);
        if (!cmdline.ok()) continue;
        if (cmdline->find("qemu") != std::string::npos && cmdline->find(needle) != std::string::npos)
            found.push_back(pid);
    }
    closedir(proc);
    return found;
}

}  // namespace

TEST_F(VmLifecycle, MissingKernelIsAClearError) {
    auto options = test::test_boot_options();
    options.kernel_path = "/nonexistent/kiln/vmlinux";
    auto booted = vm::Vm::boot(options);
    ASSERT_FALSE(booted.ok());
    EXPECT_EQ(booted.error().code, ErrorCode::KernelMissing);
    EXPECT_NE(booted.error().message.find("/nonexistent/kiln/vmlinux"), std::string::npos) << booted.error().message;
    EXPECT_NE(booted.error().message.find("make images"), std::string::npos) << booted.error().message;
}

TEST_F(VmLifecycle, MissingImageIsAClearError) {
    auto options = test::test_boot_options();
    options.image = "no-such-image";
    auto booted = vm::Vm::boot(options);
    ASSERT_FALSE(booted.ok());
    EXPECT_EQ(booted.error().code, ErrorCode::ImageMissing);
    EXPECT_NE(booted.error().message.find("no-such-image"), std::string::npos);
}

TEST_F(VmLifecycle, CorruptImageIsRefusedBeforeBooting) {
    auto image = vm::find_image(test::test_image());
    ASSERT_TRUE(image.ok());
    std::string dir = vm::data_dir() + "/test-corrupt-image";
    ASSERT_TRUE(make_dirs(dir).ok());
    std::string copy = dir + "/rootfs.ext4";
    (void)remove_tree(copy);
    ASSERT_TRUE(vm::clone_file(image->rootfs, copy).ok());
    {
        std::fstream f(copy, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(1024);
        std::string zeros(1024, '\0');
        f.write(zeros.data(), zeros.size());  // the whole primary superblock
    }
    auto options = test::test_boot_options();
    options.rootfs_path = copy;
    auto booted = vm::Vm::boot(options);
    (void)remove_tree(dir);
    ASSERT_FALSE(booted.ok());
    EXPECT_EQ(booted.error().code, ErrorCode::ImageCorrupt);
    EXPECT_NE(booted.error().message.find("0xEF53"), std::string::npos) << booted.error().message;
}

TEST_F(VmLifecycle, GuestPanicIsReportedWithinSeconds) {
    auto machine = boot();
    ASSERT_TRUE(machine);
    proto::ExecRequest request;
    request.shell = "echo c > /proc/sysrq-trigger; sleep 300";
    auto start = Clock::now();
    auto result = machine->agent().exec(request);
    auto elapsed = std::chrono::duration_cast<Millis>(Clock::now() - start).count();
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().code, ErrorCode::VmGone);
    EXPECT_NE(result.error().message.find("Kernel panic - not syncing"), std::string::npos) << result.error().message;
    EXPECT_LT(elapsed, 10000);
    // Later calls fail at once with the same explanation.
    start = Clock::now();
    auto ping = machine->agent().ping(Millis(30000));
    ASSERT_FALSE(ping.ok());
    EXPECT_NE(ping.error().message.find("panicked"), std::string::npos) << ping.error().message;
    EXPECT_LT(std::chrono::duration_cast<Millis>(Clock::now() - start).count(), 1000);
    ASSERT_TRUE(machine->panic().has_value());
    auto exit = machine->wait_exit(Millis(10000));
    EXPECT_TRUE(exit.has_value()) << "QEMU should end after a panic (panic=-1, -no-reboot)";
}

TEST_F(VmLifecycle, QemuDyingFailsPendingCallsPromptly) {
    auto machine = boot();
    ASSERT_TRUE(machine);
    pid_t pid = machine->pid();
    std::thread killer([pid] {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        ::kill(pid, SIGKILL);  // a QEMU this test started
    });
    proto::ExecRequest request;
    request.argv = {"sleep", "300"};
    auto start = Clock::now();
    auto result = machine->agent().exec(request);
    killer.join();
    auto elapsed = std::chrono::duration_cast<Millis>(Clock::now() - start).count();
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().code, ErrorCode::VmGone);
    EXPECT_NE(result.error().message.find("killed by signal 9"), std::string::npos) << result.error().message;
    EXPECT_LT(elapsed, 5000);
}

TEST_F(VmLifecycle, GracefulShutdownThroughTheAgent) {
    auto machine = boot();
    ASSERT_TRUE(machine);
    auto written = machine->agent().write_file("/root/kiln-shutdown-test", vm::source_from_string("data"));
    ASSERT_TRUE(written.ok()) << written.error().to_string();
    auto method = machine->shutdown(Millis(20000));
    EXPECT_EQ(method, vm::ShutdownMethod::Agent);
    auto exit = machine->wait_exit(Millis(0));
    ASSERT_TRUE(exit.has_value());
    EXPECT_TRUE(exit->success()) << exit->describe();
    auto ping = machine->agent().ping(Millis(5000));
    ASSERT_FALSE(ping.ok());
    EXPECT_EQ(ping.error().code, ErrorCode::VmGone);
}

TEST_F(VmLifecycle, TwentyBootsLeaveNoQemuAndNoRunDir) {
    // Only this test's VMs are counted: other VMs may share the data dir.
    std::vector<int64_t> ready_ms;
    std::vector<std::string> run_dirs;
    for (int i = 0; i < 20; ++i) {
        auto machine = boot();
        ASSERT_TRUE(machine) << "boot " << i;
        ready_ms.push_back(machine->timings().ready_ms);
        run_dirs.push_back(machine->run_dir());
        auto out = machine->agent().exec_collect(proto::ExecRequest{.argv = {"true"}});
        ASSERT_TRUE(out.ok()) << out.error().to_string();
        machine->destroy();
        EXPECT_FALSE(path_exists(run_dirs.back()));
    }
    std::sort(ready_ms.begin(), ready_ms.end());
    std::printf("[ info ] boot to ready over 20 boots (%s): min %ld ms, p50 %ld ms, max %ld ms\n", "tcg",
                static_cast<long>(ready_ms.front()), static_cast<long>(ready_ms[ready_ms.size() / 2]),
                static_cast<long>(ready_ms.back()));
    for (const auto& dir : run_dirs) {
        EXPECT_EQ(processes_mentioning(dir + "/"), std::vector<std::string>{}) << dir;
        EXPECT_FALSE(path_exists(dir)) << dir;
    }
}

// A template's guest ticks from its APIC timer, so its idle clones do not wake ~36 times a second
// for the PIT (Vm::boot). The kernel's check of that timer can fail on a loaded host; the boot is
// then repeated, at most 4 times, and the VM says which device it got.
TEST_F(VmLifecycle, ASnapshottableBootTicksFromTheApicTimerOrSaysItCouldNot) {
    auto options = test::test_boot_options();
    options.snapshottable = true;
    auto vm = vm::Vm::boot(options);
    ASSERT_TRUE(vm.ok()) << vm.error().to_string();
    const vm::BootTimings& t = (*vm)->timings();
    if (t.accel != vm::Accel::Tcg) {  // a KVM guest keeps its APIC timer: nothing is checked or repeated
        EXPECT_EQ(t.tick_device, "");
        EXPECT_EQ(t.boot_attempts, 1);
        return;
    }
    EXPECT_TRUE(t.tick_device == "lapic" || t.tick_device == "pit") << t.tick_device;
    EXPECT_GE(t.boot_attempts, 1);
    if (t.tick_device == "pit") EXPECT_EQ(t.boot_attempts, 4) << "the PIT kept before the last attempt";
    else EXPECT_LE(t.boot_attempts, 4);
}

// The retry itself, made certain: with noapictimer every boot ticks from the PIT, so the boot is
// repeated 4 times, each VM before the last destroyed, and the last one kept and working.
TEST_F(VmLifecycle, ABootWhoseGuestKeepsThePitIsRepeatedFourTimesThenKept) {
    auto options = test::test_boot_options();
    options.snapshottable = true;
    options.extra_kernel_args.push_back("noapictimer");
    const std::string marker = "kiln.retry_test=" + random_hex(6).value();  // finds this test's QEMUs
    options.extra_kernel_args.push_back(marker);
    std::vector<std::string> progress;
    options.on_progress = [&](std::string_view line) { progress.emplace_back(line); };
    auto vm = vm::Vm::boot(options);
    ASSERT_TRUE(vm.ok()) << vm.error().to_string();
    if ((*vm)->timings().accel != vm::Accel::Tcg) {  // not repeated under KVM, whatever the guest ticks from
        EXPECT_EQ((*vm)->timings().boot_attempts, 1);
        return;
    }
    EXPECT_EQ((*vm)->timings().tick_device, "pit");
    EXPECT_EQ((*vm)->timings().boot_attempts, 4);
    int retries = 0;
    for (const auto& line : progress) retries += line.find("booting again") != std::string::npos;
    EXPECT_EQ(retries, 3);
    EXPECT_EQ(processes_mentioning(marker).size(), 1u) << "the VMs of the earlier attempts are gone";
    proto::ExecRequest req;
    req.shell = "echo ok";
    auto out = (*vm)->agent().exec_collect(req);
    ASSERT_TRUE(out.ok()) << out.error().to_string();
    EXPECT_EQ(out->stdout_data, "ok\n");
}
