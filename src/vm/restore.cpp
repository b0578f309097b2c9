// restore_snapshot: a new VM from a snapshot directory, its QEMU started now or taken from a SparePool.
#include "vm/snapshot.h"

#include "base/random.h"
#include "vm/accel.h"
#include "vm/clone_launch.h"
#include "vm/guest_artifacts.h"
#include "vm/qemu_version.h"
#include "vm/spare_pool.h"

namespace kiln::vm {
namespace {

int64_t since_ms(Clock::time_point start) {
    return std::chrono::duration_cast<Millis>(Clock::now() - start).count();
}

Result<SnapshotHost> this_host() {
    auto accel = choose_accel(AccelMode::Auto);
    if (!accel.ok()) return std::move(accel).error();
    auto qemu = TRY(qemu_info());
    return SnapshotHost{accel_name(accel->accel), qemu.version.to_string()};
}

}  // namespace

Result<std::unique_ptr<Vm>> restore_snapshot(const RestoreRequest& request, RestoreTimings* timings) {
    auto start = Clock::now();
    RestoreTimings t;

    // 1. Nothing starts unless the snapshot is whole and made for this host.
    auto manifest = TRY(load_and_verify(request.snapshot_dir, request.verify));
    TRY(check_compatible(manifest, TRY(this_host())));
    auto kernel = TRY(find_kernel());
    if (!manifest.kernel_release.empty() && !kernel.release.empty() && kernel.release != manifest.kernel_release)
        return make_error(ErrorCode::SnapshotIncompatible, "snapshot was taken with kernel " + manifest.kernel_release +
                                                       " but the cached kernel is " + kernel.release);
    const bool nic_from_spare = request.spare_nic && !request.net && request.spares && request.id.empty();
    if (manifest.nic != (request.net.has_value() || nic_from_spare))
        return make_error(ErrorCode::SnapshotIncompatible, manifest.nic ? "snapshot was taken with a NIC: restore it with one"
                                                                : "snapshot was taken without a NIC: restore it without one");
    t.verify_ms = since_ms(start);

    // 2-3. This VM's own disk (a reflink of the snapshot's), and QEMU with the snapshot's RAM mapped
    // copy-on-write, waiting for the device state: a spare started ahead, else started now.
    std::unique_ptr<Vm> vm;
    // A spare has its own id, named in its run dir and its QEMU's open paths (QEMU reopens the disk
    // by path when it activates it after the load), so it serves only restores that let Kiln pick the id.
    if (request.spares && request.id.empty() && !request.net) {
        vm = request.spares->take(request.snapshot_dir, manifest, nic_from_spare ? request.spare_nic : nullptr,
                                  &t.warm_spare);
        t.spare = vm != nullptr;
        if (vm && nic_from_spare && request.on_spare_nic) request.on_spare_nic();
    }
    if (!vm && nic_from_spare)
        return make_error(ErrorCode::Unavailable, "no spare QEMU with its own NIC is ready for " + request.snapshot_dir);
    if (!vm) {
        std::string id = request.id.empty() ? TRY(random_hex(6)) : request.id;
        vm = TRY(launch_for_snapshot(request.snapshot_dir, manifest, kernel, id, request.net));
    }
    t.prepared_ms = t.launched_ms = since_ms(start);

    // 4. Device state only: the RAM is the mapped file. A warm spare loaded it already and waits
    // stopped after its warm-up.
    if (t.warm_spare) TRY(resume_warm_spare(*vm));
    else TRY(load_snapshot_state(*vm, request.timeout));
    t.loaded_ms = since_ms(start);

    // 5. Fresh entropy, clock and identity before anything else reaches the agent.
    GuestInfo guest{kernel.release, manifest.image_name, manifest.image_key, manifest.id,
                    request.hostname.empty() ? "kiln-" + vm->id() : request.hostname};
    vm->set_guest(guest);
    TRY(vm->renew_identity());
    t.ready_ms = since_ms(start);
    if (request.spares && !request.net) request.spares->prepare(request.snapshot_dir);
    if (timings) *timings = t;
    return vm;
}

}  // namespace kiln::vm
