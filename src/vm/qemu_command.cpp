// Builds QEMU's argv for a microvm guest: devices, sockets, accelerator, memory backing, sandbox.
#include "vm/qemu_command.h"

#include "vm/sealed_memory.h"

namespace kiln::vm {
namespace {

const char* kSandboxSettings = "on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny";

std::string sandbox_option(bool allow_spawn) {
    return std::string(kSandboxSettings) + (allow_spawn ? ",spawn=allow" : ",spawn=deny");
}

Status invalid(const std::string& message) { return make_error(ErrorCode::InvalidArgument, message); }

// A kernel argument is one token of printable ASCII with no quotes: it reaches the guest verbatim.
bool is_safe_kernel_arg(const std::string& arg) {
    if (arg.empty() || arg.size() > 256) return false;
    for (char c : arg)
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '\'') return false;
    return true;
}

Status validate(const VmConfig& c) {
    if (c.qemu_binary.empty()) return invalid("no QEMU binary");
    if (c.kernel_path.empty()) return invalid("no kernel path");
    if (c.rootfs_path.empty()) return invalid("no root file system image");
    if (c.run_dir.empty() || c.run_dir[0] != '/') return invalid("the run dir must be an absolute path");
    if (c.vcpus < 1 || c.vcpus > kMaxVcpus)
        return invalid("vcpus must be between 1 and " + std::to_string(kMaxVcpus));
    if (c.memory_mib < kMinMemoryMib || c.memory_mib > kMaxMemoryMib)
        return invalid("memory must be between " + std::to_string(kMinMemoryMib) + " and " +
                       std::to_string(kMaxMemoryMib) + " MiB");
    for (const auto& arg : c.extra_kernel_args)
        if (!is_safe_kernel_arg(arg)) return invalid("kernel argument '" + arg + "' is not a single plain token");
    if (c.memory_file && c.memory_file->path.empty()) return invalid("memory file without a path");
    if (c.memory_file && !c.memory_file->share && !c.memory_file->sealed)
        return invalid("a private memory file must be given as sealed memory");
    for (char ch : c.name)
        if (!(isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.'))
            return invalid("VM name may hold only letters, digits, '-', '_' and '.'");
    if (c.net) {
        if (c.net->tap_fd < 3) return invalid("the tap fd must be an open descriptor above 2");
        const std::string& mac = c.net->mac;
        bool mac_ok = mac.size() == 17;
        for (size_t i = 0; mac_ok && i < mac.size(); ++i)
            mac_ok = i % 3 == 2 ? mac[i] == ':' : isxdigit(static_cast<unsigned char>(mac[i])) != 0;
        if (!mac_ok) return invalid("NIC MAC '" + mac + "' is not of the form 52:54:00:12:34:56");
    }
    return ok_status();
}

}  // namespace

RunPaths RunPaths::in(const std::string& run_dir) {
    RunPaths p;
    p.dir = run_dir;
    p.jail = run_dir + "/jail";
    p.qmp_socket = p.jail + "/qmp.sock";
    p.console_socket = p.jail + "/console.sock";
    p.agent_socket = p.jail + "/agent.sock";
    p.qemu_log = run_dir + "/qemu.log";
    p.console_log = run_dir + "/console.log";
    p.disk = p.jail + "/rootfs.ext4";
    return p;
}

std::string qemu_opt_escape(const std::string& value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        out.push_back(c);
        if (c == ',') out.push_back(',');
    }
    return out;
}

std::string kernel_cmdline(const VmConfig& c) {
    // reboot=t + panic=-1 + QEMU's -no-reboot: a guest reboot or panic ends the QEMU process
    // (without ACPI, poweroff only halts).
    std::string line = "console=ttyS0 root=/dev/vda rw rootfstype=ext4 reboot=t panic=-1 quiet mitigations=off";
    if (c.tsc_khz > 0) line += " tsc_early_khz=" + std::to_string(c.tsc_khz);
    for (const auto& arg : c.extra_kernel_args) line += " " + arg;
    return line;
}

Result<std::vector<std::string>> build_qemu_argv(const VmConfig& c) {
    TRY(validate(c));
    RunPaths paths = RunPaths::in(c.run_dir);
    std::string mem = std::to_string(c.memory_mib) + "M";
    std::vector<std::string> a = {c.qemu_binary};
    auto add = [&a](std::initializer_list<std::string> items) { a.insert(a.end(), items); };

    if (!c.name.empty()) add({"-name", c.name + ",debug-threads=on"});
    // RAM is always the backend object "mem", so the migration stream names the same RAM block
    // whether it comes from a booted VM (anonymous or a shared file) or a restored one (private file).
    std::string machine = "microvm,acpi=off,memory-backend=mem";
    add({"-M", machine});
    add({"-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-display", "none", "-msg", "timestamp=on"});
    if (c.accel == Accel::Kvm) add({"-accel", "kvm", "-cpu", "host"});
    else add({"-accel", "tcg,thread=multi" + (c.tcg_tb_mib ? ",tb-size=" + std::to_string(c.tcg_tb_mib) : std::string())});
    add({"-m", mem, "-smp", std::to_string(c.vcpus)});
    if (c.memory_file)
        add({"-object", "memory-backend-file,id=mem,size=" + mem + ",mem-path=" +
                            qemu_opt_escape(c.memory_file->sealed ? c.memory_file->sealed->qemu_path() : c.memory_file->path) +
                            ",share=" + (c.memory_file->share ? "on" : "off")});
    else
        add({"-object", "memory-backend-ram,id=mem,size=" + mem});
    // An incoming VM gets its RAM from the snapshot or stream and never boots: loading the kernel
    // would only cost start-up time (~8 ms of QEMU CPU under TCG) and ~1 MiB.
    if (!c.incoming_defer) add({"-kernel", c.kernel_path, "-append", kernel_cmdline(c)});

    // Serial console and QMP: unix sockets QEMU listens on; wait=off so QEMU never blocks on us.
    add({"-chardev", "socket,id=console,path=" + qemu_opt_escape(paths.console_socket) + ",server=on,wait=off",
         "-serial", "chardev:console"});
    add({"-chardev", "socket,id=qmp,path=" + qemu_opt_escape(paths.qmp_socket) + ",server=on,wait=off", "-mon",
         "chardev=qmp,mode=control"});

    add({"-drive", "id=root,file=" + qemu_opt_escape(c.rootfs_path) + ",format=raw,if=none,cache=" +
                       (c.disk_cache == DiskCache::Unsafe ? "unsafe" : "writeback"),
         "-device", "virtio-blk-device,drive=root"});

    // The agent channel: a virtio-serial port the guest finds by name.
    add({"-device", "virtio-serial-device", "-chardev",
         "socket,id=agent,path=" + qemu_opt_escape(paths.agent_socket) + ",server=on,wait=off", "-device",
         "virtserialport,chardev=agent,name=kiln.agent"});

    // Without virtio-rng the guest's first /dev/urandom read can stall for a long time under TCG.
    add({"-object", "rng-random,id=rng,filename=/dev/urandom", "-device", "virtio-rng-device,rng=rng"});

    // The NIC: QEMU inherits the tap fd (SpawnOptions::keep_fds), so it opens nothing itself.
    if (c.net)
        add({"-netdev", "tap,id=net0,fd=" + std::to_string(c.net->tap_fd), "-device",
             "virtio-net-device,netdev=net0,mac=" + c.net->mac});

    if (c.start_paused) add({"-S"});
    if (c.incoming_defer) add({"-incoming", "defer"});
    if (c.sandbox) add({"-sandbox", sandbox_option(c.sandbox_allow_spawn)});
    return a;
}

std::vector<std::string> qemu_version_argv(const std::string& binary, bool with_sandbox) {
    if (with_sandbox) return {binary, "-sandbox", sandbox_option(false), "-version"};
    return {binary, "--version"};
}

std::vector<std::string> qemu_smoke_argv(const std::string& binary, const std::string& qmp_socket, bool with_sandbox) {
    std::vector<std::string> a = {binary, "-machine", "none", "-nodefaults", "-no-user-config", "-display", "none",
                                  "-chardev", "socket,id=qmp,path=" + qemu_opt_escape(qmp_socket) + ",server=on,wait=off",
                                  "-mon", "chardev=qmp,mode=control"};
    if (with_sandbox) a.insert(a.end(), {"-sandbox", sandbox_option(false)});
    return a;
}

}  // namespace kiln::vm
