// The run dir, config and QEMU of a VM made from saved state (see clone_launch.h).
#include "vm/clone_launch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errno_error.h"
#include "base/file_util.h"
#include "base/unique_fd.h"
#include "vm/agent_client.h"
#include "vm/disk_clone.h"
#include "vm/qemu_version.h"
#include "vm/sealed_memory.h"
#include "vm/vm_migration.h"

namespace kiln::vm {

VmConfig clone_config(const VmConfig& source, const std::string& run_dir) {
    VmConfig config = source;
    config.run_dir = run_dir;
    config.rootfs_path = RunPaths::in(run_dir).disk;
    config.incoming_defer = true;
    // -S: a loaded VM waits for finish_incoming's cont even when its source ran (a live fork's
    // parent), so its disk can still be made the parent's after the load.
    config.start_paused = true;
    config.memory_file.reset();
    config.net.reset();  // the source's tap fd is the source's: a clone gets its own
    return config;
}

Result<std::string> new_run_dir(const std::string& id) {
    auto dir = TRY(run_dir_for(id));
    TRY(make_dirs(vms_dir(), 0700));
    if (::mkdir(dir.c_str(), 0700) != 0) return errno_error("create run dir " + dir);
    std::string jail = RunPaths::in(dir).jail;
    if (::mkdir(jail.c_str(), 0700) != 0) {
        Error e = errno_error("create " + jail);
        (void)remove_tree(dir);
        return e;
    }
    return dir;
}

Result<std::unique_ptr<Vm>> launch_for_snapshot(const std::string& snapshot_dir, const SnapshotManifest& manifest,
                                                const KernelArtifact& kernel, const std::string& id,
                                                const std::optional<NetDevice>& net) {
    std::string run_dir = TRY(new_run_dir(id));
    RunPaths paths = RunPaths::in(run_dir);
    if (auto c = clone_file(snapshot_dir + "/" + kDiskFileName, paths.disk); !c.ok()) {
        (void)remove_tree(run_dir);
        return std::move(c).error();
    }
    auto qemu = qemu_info();
    if (!qemu.ok()) {
        (void)remove_tree(run_dir);
        return std::move(qemu).error();
    }
    VmConfig config;
    config.qemu_binary = qemu->binary;
    config.sandbox = qemu->sandbox;
    config.name = "kiln-" + id;
    config.kernel_path = kernel.path;  // not booted (incoming); recorded for snapshots of this VM
    config.vcpus = manifest.vcpus;
    config.memory_mib = manifest.memory_mib;
    config.accel = manifest.accel == "kvm" ? Accel::Kvm : Accel::Tcg;
    config.disk_cache = DiskCache::Unsafe;
    if (auto khz = host_tsc_khz(); khz.ok()) config.tsc_khz = *khz;
    config = clone_config(config, run_dir);
    auto sealed = sealed_memory_for(snapshot_dir + "/" + kMemoryFileName);
    if (!sealed.ok()) {
        (void)remove_tree(run_dir);
        return std::move(sealed).error();
    }
    config.memory_file = MemoryFile{snapshot_dir + "/" + kMemoryFileName, /*share=*/false, *sealed};
    config.net = net;
    auto vm = TRY(Vm::launch(config, id));
    UniqueFd state(::open((snapshot_dir + "/" + kStateFileName).c_str(), O_RDONLY | O_CLOEXEC));
    if (!state) return errno_error("open " + snapshot_dir + "/" + kStateFileName);
    TRY(VmMigration(*vm).prepare_incoming(state.get(), /*ignore_shared=*/true));
    return vm;
}

Status load_snapshot_state(Vm& vm, Millis timeout) { return VmMigration(vm).load(deadline_after(timeout)); }

Status warm_up_spare(Vm& vm) {
    constexpr Millis kTimeout{30000};
    TRY(load_snapshot_state(vm, kTimeout));
    TRY(vm.renew_identity());
    // What a sandbox's first command takes: the agent's exec and output paths, the guest's fork,
    // exec and dynamic loading, a shell; and git where the image has it, since Kiln's CI runs git
    // first in every job's VM (the checkout). Twice, since the first run also faults pages in and
    // a block QEMU translates once may be retranslated when its page is first written.
    for (int round = 0; round < 2; ++round) {
        for (bool with_shell : {true, false}) {
            proto::ExecRequest request;
            if (with_shell) request.shell = "echo kiln-warm-up; if command -v git >/dev/null; then git --version; fi";
            else request.argv = {"true"};
            request.timeout_ms = uint64_t(kTimeout.count());
            ExecIo io;
            io.host_timeout = kTimeout + Millis(5000);
            auto ran = TRY(vm.agent().exec_collect(std::move(request), std::move(io), 4096));
            if (ran.result.exit_code != 0 || ran.result.signal != 0)
                return make_error(ErrorCode::Internal, "the warm-up command failed in the spare");
        }
    }
    return VmMigration(vm).stop();
}

Status resume_warm_spare(Vm& vm) { return VmMigration(vm).resume(); }

}  // namespace kiln::vm
