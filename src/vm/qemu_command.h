// VmConfig -> the qemu-system-x86_64 command line. The only file that knows QEMU's option names.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "vm/accel.h"

namespace kiln::vm {

class SealedMemory;

// The files QEMU and Kiln share inside one VM's run directory.
// Two levels: `dir` is Kiln's (root-owned: the logs QEMU must not touch or replace), and `jail`
// inside it is the VM's (owned by its jail uid, the only host directory its jailed QEMU sees,
// bound at the same path): sockets, the disk clone and a snapshottable VM's RAM file. Kilnd opens
// nothing in `jail` by a path that QEMU could have swapped for a link (O_NOFOLLOW).
struct RunPaths {
    std::string dir;
    std::string jail;            // dir/jail
    std::string qmp_socket;      // QMP monitor (server: QEMU)
    std::string console_socket;  // serial console ttyS0 (server: QEMU)
    std::string agent_socket;    // virtio-serial port kiln.agent (server: QEMU)
    std::string qemu_log;        // QEMU's own stderr
    std::string console_log;     // the serial console, bounded (ConsoleLog)
    std::string disk;            // this VM's clone of the root file system image

    static RunPaths in(const std::string& run_dir);
};

// RAM backed by a file instead of anonymous memory, for snapshots: share=true lets a migration
// with x-ignore-shared skip RAM (the file is the RAM); share=false maps it copy-on-write (restore).
// A private (share=false) memory file is given to QEMU as a SealedMemory memfd (sealed_memory.h):
// `path` still names the file it was copied from (snapshots and forks read it), `sealed` is what
// QEMU maps.
struct MemoryFile {
    std::string path;
    bool share = false;
    std::shared_ptr<const SealedMemory> sealed;  // QEMU inherits its fd; required when !share
};

// How QEMU caches the root disk.
//  - Writeback (the default): guest flushes reach the host disk. Use for any disk that must
//    survive a host crash.
//  - Unsafe: guest flushes are ignored on the host. Right for a per-VM clone that is deleted with
//    the VM (a host crash loses the VM anyway); it spares CI jobs full of fsync (dpkg, git) a
//    host fdatasync each. Writes still land in the host page cache, so a snapshot that reads or
//    reflinks the file sees them; whoever keeps such a file beyond the VM must fsync it.
enum class DiskCache { Writeback, Unsafe };

// A virtio-net NIC backed by a tap device the caller opened (in a sandbox's own network
// namespace, see src/daemon/net): QEMU only gets the fd, so it stays in the host namespace and
// keeps its seccomp sandbox. A snapshot taken with a NIC restores only with one (and vice versa).
struct NetDevice {
    int tap_fd = -1;  // inherited by QEMU under this number (> 2); the caller owns and closes it
    std::string mac;  // "52:54:00:xx:xx:xx"
};

struct VmConfig {
    std::string qemu_binary = "qemu-system-x86_64";
    std::string name;  // -name; shows in ps and thread names
    std::string kernel_path;  // booted unless incoming_defer (recorded in snapshots either way)
    std::string rootfs_path;  // raw ext4 image, read-write
    DiskCache disk_cache = DiskCache::Writeback;
    uint32_t vcpus = 1;
    uint32_t memory_mib = 256;
    Accel accel = Accel::Tcg;
    // TCG's translation cache (-accel tcg,tb-size=): QEMU 7.2's default on a 64-bit host is 1 GiB,
    // filled as the guest runs new code; set so the VM's memory limit (its cgroup) can be honest.
    uint32_t tcg_tb_mib = 128;
    std::string run_dir;
    uint64_t tsc_khz = 0;  // tsc_early_khz= for the guest; 0 leaves it out
    std::vector<std::string> extra_kernel_args;
    std::optional<MemoryFile> memory_file;  // nothing: anonymous RAM
    bool incoming_defer = false;  // wait for migrate-incoming (restores); no -kernel then
    bool start_paused = false;    // -S: the guest starts at QMP "cont" (no console output is lost)
    bool sandbox = true;          // -sandbox (seccomp), when this QEMU supports it
    bool sandbox_allow_spawn = false;  // let QEMU fork/exec (needed only for "exec:" migration URIs)
    std::optional<NetDevice> net;      // nothing: no NIC at all
};

inline constexpr uint32_t kMaxVcpus = 64;
inline constexpr uint32_t kMinMemoryMib = 64;
inline constexpr uint32_t kMaxMemoryMib = 256 * 1024;

// The guest kernel command line for `config`.
std::string kernel_cmdline(const VmConfig& config);

// Validates `config` and builds argv (argv[0] is the QEMU binary).
Result<std::vector<std::string>> build_qemu_argv(const VmConfig& config);

// `qemu -version`, optionally preceded by the -sandbox settings we use, to probe support for them.
std::vector<std::string> qemu_version_argv(const std::string& binary, bool with_sandbox);

// A QEMU with no machine and only a QMP monitor on `qmp_socket`: proves QEMU starts (with its
// sandbox) and measures the start-to-QMP floor.
std::vector<std::string> qemu_smoke_argv(const std::string& binary, const std::string& qmp_socket, bool with_sandbox);

// Escapes a value for QEMU's key=value option syntax (',' becomes ',,').
std::string qemu_opt_escape(const std::string& value);

}  // namespace kiln::vm
