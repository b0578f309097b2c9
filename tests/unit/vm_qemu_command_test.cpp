// Unit tests for the QEMU command line built from a VmConfig.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "vm/qemu_command.h"
#include "vm/sealed_memory.h"

using namespace kiln::vm;
using kiln::ErrorCode;

namespace {

VmConfig base_config() {
    VmConfig c;
    c.qemu_binary = "qemu-system-x86_64";
    c.name = "kiln-abc123";
    c.kernel_path = "/cache/kernel/vmlinux";
    c.rootfs_path = "/data/vms/abc123/rootfs.ext4";
    c.run_dir = "/data/vms/abc123";
    c.vcpus = 2;
    c.memory_mib = 512;
    c.tsc_khz = 2100000;
    return c;
}

// The value following `option` (the first occurrence), or "" when absent.
std::string value_of(const std::vector<std::string>& argv, const std::string& option, size_t nth = 0) {
    for (size_t i = 0; i + 1 < argv.size(); ++i)
        if (argv[i] == option && nth-- == 0) return argv[i + 1];
    return "";
}

bool has(const std::vector<std::string>& argv, const std::string& item) {
    return std::find(argv.begin(), argv.end(), item) != argv.end();
}

// All values given to a repeated option.
std::vector<std::string> values_of(const std::vector<std::string>& argv, const std::string& option) {
    std::vector<std::string> out;
    for (size_t i = 0; i + 1 < argv.size(); ++i)
        if (argv[i] == option) out.push_back(argv[i + 1]);
    return out;
}

}  // namespace

TEST(QemuCommand, TcgMicrovmWithAllDevices) {
    auto argv = build_qemu_argv(base_config());
    ASSERT_TRUE(argv.ok()) << argv.error().message;
    const auto& a = *argv;
    EXPECT_EQ(a[0], "qemu-system-x86_64");
    EXPECT_EQ(value_of(a, "-M"), "microvm,acpi=off,memory-backend=mem");
    EXPECT_EQ(values_of(a, "-object")[0], "memory-backend-ram,id=mem,size=512M");
    for (const char* flag : {"-nodefaults", "-no-user-config", "-no-reboot"}) EXPECT_TRUE(has(a, flag)) << flag;
    EXPECT_EQ(value_of(a, "-display"), "none");
    EXPECT_EQ(value_of(a, "-accel"), "tcg,thread=multi,tb-size=128");
    EXPECT_FALSE(has(a, "-cpu"));
    EXPECT_EQ(value_of(a, "-m"), "512M");
    EXPECT_EQ(value_of(a, "-smp"), "2");
    EXPECT_EQ(value_of(a, "-kernel"), "/cache/kernel/vmlinux");
    EXPECT_EQ(value_of(a, "-serial"), "chardev:console");
    EXPECT_EQ(value_of(a, "-mon"), "chardev=qmp,mode=control");
    auto chardevs = values_of(a, "-chardev");
    ASSERT_EQ(chardevs.size(), 3u);
    EXPECT_EQ(chardevs[0], "socket,id=console,path=/data/vms/abc123/jail/console.sock,server=on,wait=off");
    EXPECT_EQ(chardevs[1], "socket,id=qmp,path=/data/vms/abc123/jail/qmp.sock,server=on,wait=off");
    EXPECT_EQ(chardevs[2], "socket,id=agent,path=/data/vms/abc123/jail/agent.sock,server=on,wait=off");
    EXPECT_EQ(value_of(a, "-drive"), "id=root,file=/data/vms/abc123/rootfs.ext4,format=raw,if=none,cache=writeback");
    auto devices = values_of(a, "-device");
    EXPECT_EQ(devices, (std::vector<std::string>{"virtio-blk-device,drive=root", "virtio-serial-device",
                                                 "virtserialport,chardev=agent,name=kiln.agent",
                                                 "virtio-rng-device,rng=rng"}));
    EXPECT_EQ(values_of(a, "-object").at(1), "rng-random,id=rng,filename=/dev/urandom");
    EXPECT_EQ(value_of(a, "-sandbox"), "on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny,spawn=deny");
    EXPECT_FALSE(has(a, "-S"));
    EXPECT_FALSE(has(a, "-incoming"));
}

TEST(QemuCommand, KernelCommandLine) {
    auto c = base_config();
    c.extra_kernel_args = {"loglevel=7", "kiln.debug=1"};
    auto argv = build_qemu_argv(c);
    ASSERT_TRUE(argv.ok());
    EXPECT_EQ(value_of(*argv, "-append"),
              "console=ttyS0 root=/dev/vda rw rootfstype=ext4 reboot=t panic=-1 quiet mitigations=off "
              "tsc_early_khz=2100000 loglevel=7 kiln.debug=1");
    c.tsc_khz = 0;
    EXPECT_EQ(kernel_cmdline(c).find("tsc_early_khz"), std::string::npos);
}

TEST(QemuCommand, KvmUsesTheHostCpu) {
    auto c = base_config();
    c.accel = Accel::Kvm;
    auto argv = build_qemu_argv(c);
    ASSERT_TRUE(argv.ok());
    EXPECT_EQ(value_of(*argv, "-accel"), "kvm");
    EXPECT_EQ(value_of(*argv, "-cpu"), "host");
}

TEST(QemuCommand, FileBackedMemoryForSnapshots) {
    auto c = base_config();
    c.memory_file = MemoryFile{"/snap/mem,1", true, nullptr};
    auto argv = build_qemu_argv(c);
    ASSERT_TRUE(argv.ok());
    EXPECT_EQ(value_of(*argv, "-M"), "microvm,acpi=off,memory-backend=mem");
    auto objects = values_of(*argv, "-object");
    ASSERT_EQ(objects.size(), 2u);
    EXPECT_EQ(objects[0], "memory-backend-file,id=mem,size=512M,mem-path=/snap/mem,,1,share=on");
    // A private memory file reaches QEMU only as sealed memory, named by its inherited fd.
    c.memory_file->share = false;
    EXPECT_FALSE(build_qemu_argv(c).ok()) << "share=off without sealed memory";
    char path[] = "/tmp/kiln-memfile-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
    ::close(fd);
    auto sealed = SealedMemory::from_file(path);
    ::unlink(path);
    ASSERT_TRUE(sealed.ok()) << sealed.error().to_string();
    c.memory_file->sealed = *sealed;
    argv = build_qemu_argv(c);
    ASSERT_TRUE(argv.ok());
    std::string object = values_of(*argv, "-object")[0];
    EXPECT_NE(object.find("share=off"), std::string::npos);
    EXPECT_NE(object.find("mem-path=/proc/self/fd/" + std::to_string((*sealed)->fd()) + ","), std::string::npos) << object;
}

TEST(QemuCommand, RestoreAndPausedStartAndOptions) {
    auto c = base_config();
    c.incoming_defer = true;
    c.start_paused = true;
    c.disk_cache = DiskCache::Unsafe;
    c.sandbox_allow_spawn = true;
    auto argv = build_qemu_argv(c);
    ASSERT_TRUE(argv.ok());
    EXPECT_EQ(value_of(*argv, "-incoming"), "defer");
    EXPECT_FALSE(has(*argv, "-kernel")) << "an incoming VM's RAM comes from the snapshot; it never boots";
    EXPECT_FALSE(has(*argv, "-append"));
    EXPECT_TRUE(has(*argv, "-S"));
    EXPECT_NE(value_of(*argv, "-drive").find("cache=unsafe"), std::string::npos);
    EXPECT_NE(value_of(*argv, "-sandbox").find("spawn=allow"), std::string::npos);
    c.sandbox = false;
    argv = build_qemu_argv(c);
    ASSERT_TRUE(argv.ok());
    EXPECT_FALSE(has(*argv, "-sandbox"));
}

TEST(QemuCommand, CommasInPathsAreEscaped) {
    auto c = base_config();
    c.rootfs_path = "/odd,dir/root.ext4";
    c.run_dir = "/runs/a,b";
    auto argv = build_qemu_argv(c);
    ASSERT_TRUE(argv.ok());
    EXPECT_EQ(value_of(*argv, "-drive"), "id=root,file=/odd,,dir/root.ext4,format=raw,if=none,cache=writeback");
    EXPECT_EQ(values_of(*argv, "-chardev")[0], "socket,id=console,path=/runs/a,,b/jail/console.sock,server=on,wait=off");
    EXPECT_EQ(qemu_opt_escape("a,,b"), "a,,,,b");
}

TEST(QemuCommand, RejectsInvalidConfigs) {
    auto c = base_config();
    c.vcpus = 0;
    EXPECT_FALSE(build_qemu_argv(c).ok());
    c = base_config();
    c.memory_mib = 16;
    EXPECT_FALSE(build_qemu_argv(c).ok());
    c = base_config();
    c.kernel_path.clear();
    EXPECT_FALSE(build_qemu_argv(c).ok());
    c = base_config();
    c.run_dir = "relative";
    EXPECT_FALSE(build_qemu_argv(c).ok());
    for (const char* bad : {"two words", "quote\"", "", "tab\there", "init=/bin/sh\n"}) {
        c = base_config();
        c.extra_kernel_args = {bad};
        auto r = build_qemu_argv(c);
        EXPECT_FALSE(r.ok()) << bad;
        if (!r.ok()) {
            EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
        }
    }
    c = base_config();
    c.name = "bad,name";
    EXPECT_FALSE(build_qemu_argv(c).ok());
}

TEST(QemuCommand, RunPaths) {
    auto p = RunPaths::in("/data/vms/x");
    EXPECT_EQ(p.jail, "/data/vms/x/jail") << "the only host directory a jailed QEMU sees";
    EXPECT_EQ(p.qmp_socket, "/data/vms/x/jail/qmp.sock");
    EXPECT_EQ(p.agent_socket, "/data/vms/x/jail/agent.sock");
    EXPECT_EQ(p.console_socket, "/data/vms/x/jail/console.sock");
    EXPECT_EQ(p.qemu_log, "/data/vms/x/qemu.log");
    EXPECT_EQ(p.console_log, "/data/vms/x/console.log");
    EXPECT_EQ(p.disk, "/data/vms/x/jail/rootfs.ext4");
}

TEST(QemuCommand, ProbeCommandLines) {
    auto v = qemu_version_argv("q", true);
    EXPECT_EQ(v.front(), "q");
    EXPECT_EQ(v.back(), "-version");
    EXPECT_TRUE(has(v, "-sandbox"));
    EXPECT_EQ(qemu_version_argv("q", false), (std::vector<std::string>{"q", "--version"}));
    auto s = qemu_smoke_argv("q", "/tmp/x/qmp.sock", true);
    EXPECT_EQ(value_of(s, "-machine"), "none");
    EXPECT_TRUE(has(s, "-sandbox"));
}
