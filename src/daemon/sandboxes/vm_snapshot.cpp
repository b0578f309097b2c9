// Snapshots of restored VMs through a snapshottable helper VM (see vm_snapshot.h).
#include "daemon/sandboxes/vm_snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "base/clock.h"
#include "base/errno_error.h"
#include "base/file_util.h"
#include "base/random.h"
#include "base/unique_fd.h"
#include "vm/disk_clone.h"
#include "vm/guest_artifacts.h"

namespace kiln::daemon {
namespace {

constexpr const char* kHelperFdName = "kiln-snapshot-helper";

// "cont" right after a migration completes can race QEMU's own clean-up ("Migration is not
// finalized yet"): retry that one error briefly, as the VM layer's own resume does.
Status resume(vm::Vm& vm) {
    auto deadline = Clock::now() + Millis(5000);
    for (;;) {
        auto r = vm.qmp().execute("cont");
        if (r.ok()) return ok_status();
        if (r.error().code != ErrorCode::QmpError || r.error().message.find("not finalized") == std::string::npos ||
            Clock::now() >= deadline)
            return r.error();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

// Loads the stream at `path` into `helper` (started with -incoming defer) and lets it run.
Status load_stream(vm::Vm& helper, const std::string& path, Millis timeout) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno_error("open " + path);
    auto& qmp = helper.qmp();
    if (auto r = qmp.execute_with_fd("getfd", {{"fdname", kHelperFdName}}, fd.get()); !r.ok()) return r.error();
    if (auto r = qmp.execute("migrate-incoming", {{"uri", std::string("fd:") + kHelperFdName}}); !r.ok()) return r.error();
    auto deadline = deadline_after(timeout);
    for (;;) {
        auto q = qmp.execute("query-migrate");
        if (!q.ok()) return q.error();
        std::string status = q->value("status", "");
        if (status == "completed") break;
        if (status == "failed" || status == "cancelled")
            return make_error(ErrorCode::SnapshotFailed, "loading the helper VM: migration " + status);
        if (Clock::now() > deadline) return make_error(ErrorCode::Timeout, "loading the helper VM timed out");
        std::this_thread::sleep_for(Millis(5));
    }
    return resume(helper);
}

}  // namespace

Result<vm::SnapshotManifest> snapshot_vm(vm::Vm& source, const vm::SnapshotRequest& request,
                                         std::optional<vm::NetDevice> helper_nic) {
    const vm::VmConfig& shape = source.config();
    if (shape.memory_file && shape.memory_file->share) return vm::take_snapshot(source, request);
    if (shape.net.has_value() != helper_nic.has_value())
        return make_error(ErrorCode::InvalidArgument, shape.net ? "the sandbox has a NIC: its snapshot helper needs one"
                                                        : "the sandbox has no NIC: its snapshot helper cannot have one");

    // 1. The helper's run dir, holding the stream and the disk as of the stop.
    std::string helper_id = TRY(random_hex(6));
    std::string dir = TRY(vm::run_dir_for(helper_id));
    TRY(make_dirs(vm::vms_dir(), 0700));
    if (::mkdir(dir.c_str(), 0700) != 0) return errno_error("create " + dir);
    vm::RunPaths paths = vm::RunPaths::in(dir);
    std::string stream = dir + "/stream";

    // 2. The source's whole state (RAM included) while it is stopped, and its disk at that instant;
    //    then it runs on with a renewed identity (write_full_state froze its agent).
    Status saved = vm::write_full_state(source, stream);
    Status cloned = saved.ok() ? Status(ok_status()) : saved;
    if (saved.ok()) {
        auto c = vm::clone_file(shape.rootfs_path, paths.disk);
        if (!c.ok()) cloned = c.error();
    }
    if (request.resume) {
        Status renewed = resume(source);
        if (renewed.ok()) renewed = source.renew_identity();
        if (!renewed.ok() && saved.ok()) {
            (void)remove_tree(dir);
            return make_error(renewed.error().code == ErrorCode::VmGone ? ErrorCode::VmGone : ErrorCode::SnapshotFailed,
                              "resuming the sandbox: " + renewed.error().message);
        }
    }
    if (!saved.ok() || !cloned.ok()) {
        (void)remove_tree(dir);
        const Error& e = !saved.ok() ? saved.error() : cloned.error();
        return make_error(e.code == ErrorCode::VmGone ? ErrorCode::VmGone : ErrorCode::SnapshotFailed, "saving the sandbox: " + e.message);
    }

    // 3. A helper QEMU shaped like the source with its RAM in a shared file, loaded from the stream.
    vm::VmConfig config = shape;
    config.name = "kiln-snap-" + helper_id;
    config.run_dir = dir;
    config.rootfs_path = paths.disk;
    config.incoming_defer = true;
    config.start_paused = false;
    config.memory_file = vm::MemoryFile{dir + "/memory", /*share=*/true};
    config.net = helper_nic;
    auto helper = vm::Vm::launch(config, helper_id);  // removes dir when destroyed
    if (!helper.ok()) {
        (void)remove_tree(dir);
        return make_error(ErrorCode::SnapshotFailed, "starting the helper VM: " + helper.error().to_string());
    }
    Status loaded = load_stream(**helper, stream, Millis(60000));
    (void)::unlink(stream.c_str());
    if (!loaded.ok()) return make_error(ErrorCode::SnapshotFailed, "helper VM: " + loaded.error().to_string());
    vm::GuestInfo guest = source.guest();
    (*helper)->set_guest(guest);
    // 4. Its agent was frozen with the source's state: renew (which thaws it), then snapshot it.
    if (auto st = (*helper)->renew_identity(); !st.ok())
        return make_error(ErrorCode::SnapshotFailed, "helper VM identity: " + st.error().to_string());
    vm::SnapshotRequest helper_request = request;
    helper_request.resume = false;
    auto manifest = vm::take_snapshot(**helper, helper_request);
    (*helper)->destroy();
    return manifest;
}

}  // namespace kiln::daemon
