// snapshot_any_vm: snapshots of restored and forked VMs through a snapshottable helper VM.
#include "vm/snapshot_any.h"

#include <unistd.h>

#include "base/file_util.h"
#include "base/random.h"
#include "vm/clone_launch.h"
#include "vm/disk_clone.h"
#include "vm/guest_artifacts.h"
#include "vm/vm_migration.h"

namespace kiln::vm {
namespace {

ErrorCode vm_gone_or(const Error& e, ErrorCode otherwise) {
    return e.code == ErrorCode::VmGone ? ErrorCode::VmGone : otherwise;
}

}  // namespace

Result<SnapshotManifest> snapshot_any_vm(Vm& source, const SnapshotRequest& request, std::optional<NetDevice> helper_nic) {
    const VmConfig& shape = source.config();
    if (shape.memory_file && shape.memory_file->share) return take_snapshot(source, request);
    if (shape.net.has_value() != helper_nic.has_value())
        return make_error(ErrorCode::InvalidArgument, shape.net ? "the sandbox has a NIC: its snapshot helper needs one"
                                                                : "the sandbox has no NIC: its snapshot helper cannot have one");

    // 1. The helper's run dir, holding the stream and the disk as of the stop.
    std::string helper_id = TRY(random_hex(6));
    std::string dir = TRY(new_run_dir(helper_id));
    RunPaths paths = RunPaths::in(dir);
    std::string stream = dir + "/stream";

    // 2. The source's whole state (RAM included) while it is stopped, and its disk at that instant;
    //    then it runs on with a renewed identity (write_full_state froze its agent).
    Status saved = write_full_state(source, stream);
    Status cloned = saved.ok() ? Status(ok_status()) : saved;
    if (saved.ok()) {
        auto c = clone_file(shape.rootfs_path, paths.disk);
        if (!c.ok()) cloned = c.error();
    }
    if (request.resume) {
        Status renewed = VmMigration(source).resume();
        if (renewed.ok()) renewed = source.renew_identity();
        if (!renewed.ok() && saved.ok()) {
            (void)remove_tree(dir);
            return make_error(vm_gone_or(renewed.error(), ErrorCode::SnapshotFailed),
                              "resuming the sandbox: " + renewed.error().message);
        }
    }
    if (!saved.ok() || !cloned.ok()) {
        (void)remove_tree(dir);
        const Error& e = !saved.ok() ? saved.error() : cloned.error();
        return make_error(vm_gone_or(e, ErrorCode::SnapshotFailed), "saving the sandbox: " + e.message);
    }

    // 3. A helper QEMU shaped like the source with its RAM in a shared file, loaded from the stream.
    VmConfig config = clone_config(shape, dir);
    config.name = "kiln-snap-" + helper_id;
    config.memory_file = MemoryFile{paths.jail + "/memory", /*share=*/true};
    config.net = helper_nic;
    auto helper = Vm::launch(config, helper_id);  // removes dir when destroyed
    if (!helper.ok()) {
        (void)remove_tree(dir);
        return make_error(ErrorCode::SnapshotFailed, "starting the helper VM: " + helper.error().to_string());
    }
    Status loaded = VmMigration(**helper).load_from_file(stream, /*ignore_shared=*/false, Millis(60000));
    (void)::unlink(stream.c_str());
    if (!loaded.ok()) return make_error(ErrorCode::SnapshotFailed, "helper VM: " + loaded.error().to_string());
    (*helper)->set_guest(source.guest());
    // 4. Its agent was frozen with the source's state: renew (which thaws it), then snapshot it.
    if (auto st = (*helper)->renew_identity(); !st.ok())
        return make_error(ErrorCode::SnapshotFailed, "helper VM identity: " + st.error().to_string());
    SnapshotRequest helper_request = request;
    helper_request.resume = false;
    auto manifest = take_snapshot(**helper, helper_request);
    (*helper)->destroy();
    return manifest;
}

}  // namespace kiln::vm
