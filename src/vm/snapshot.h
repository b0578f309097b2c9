// Snapshot, restore and fork of running VMs. Restores map the snapshot's memory file
// copy-on-write (MAP_PRIVATE) and load only device state; disks are reflink clones.
// See docs/snapshots.md for the measured trade-offs and docs/snapshot-format.md for the files.
// take_snapshot is in snapshot.cpp, restore_snapshot in restore.cpp, fork_vm in fork.cpp; a VM
// that was not booted snapshottable is snapshotted through snapshot_any_vm (snapshot_any.h).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "vm/snapshot_manifest.h"
#include "vm/vm.h"

namespace kiln::vm {

class SparePool;
class SpareNic;

struct SnapshotTimings {
    int64_t freeze_ms = 0;   // agent synced the guest and refused new work
    int64_t paused_ms = 0;   // the VM's vCPUs were stopped for this long
    int64_t state_ms = 0;    // device state written
    int64_t clone_ms = 0;    // memory and disk cloned
    int64_t total_ms = 0;
};

struct SnapshotRequest {
    std::string dir;       // created; must not exist
    std::string id;        // empty: snap-<random>
    bool resume = true;    // the VM runs on afterwards (identity renewed); false leaves it paused
    bool checksums = true; // record SHA-256 of memory and disk (costs a read of both)
};

// Snapshots a VM booted with BootOptions::snapshottable (its RAM is a shared file in its run dir).
// Ordering, enforced here: 1. agent freeze (guest sync, exec refused) 2. vCPUs stopped
// 3. device state written with x-ignore-shared (RAM is the file) 4. memory and disk cloned while
// stopped 5. manifest written, directory renamed into place 6. resume + identity renewal.
Result<SnapshotManifest> take_snapshot(Vm& vm, const SnapshotRequest& request, SnapshotTimings* timings = nullptr);

struct RestoreTimings {
    int64_t verify_ms = 0;      // manifest, compatibility and file checks
    int64_t prepared_ms = 0;    // run dir made, disk cloned
    int64_t launched_ms = 0;    // QEMU up, QMP/console/agent connected
    int64_t loaded_ms = 0;      // device state loaded, vCPUs running
    int64_t ready_ms = 0;       // identity renewed: exec works
    bool spare = false;         // a spare QEMU started ahead for this snapshot was used (steps 2-3 done)
    bool warm_spare = false;    // ... a warm one (its state loaded and its paths run ahead: step 4 is a cont)
};

struct RestoreRequest {
    std::string snapshot_dir;
    std::string id;        // empty: random
    std::string hostname;  // empty: kiln-<id>
    VerifyLevel verify = VerifyLevel::Sizes;
    Millis timeout{30000};
    // With a pool: take its spare QEMU for this snapshot, if there is one (only with an empty id: a
    // spare comes with its own), and have it start the next one in the background once this VM is
    // ready. Null: QEMU is started for this restore. See SparePool (spare_pool.h).
    SparePool* spares = nullptr;
    // The NIC, required when the snapshot was taken with one (unless `spare_nic` is set) and
    // refused otherwise (the device set must match the saved state). A restore given `net` never
    // uses a spare: the tap fd must be there when QEMU starts.
    std::optional<NetDevice> net;
    // Instead of `net`, for a snapshot with a NIC: only a spare that was started with its own NIC
    // (SparePool::prepare with a SpareNicSource) serves the restore, and that NIC moves to
    // *spare_nic (also when a later step fails: the caller destroys it after the VM). With no such
    // spare ready the restore fails `unavailable` having started nothing, *spare_nic stays null, and
    // the caller makes a NIC and restores again with `net`.
    std::unique_ptr<SpareNic>* spare_nic = nullptr;
    // Called on this thread as soon as a spare with its NIC was taken (*spare_nic set), before its
    // device state loads: the caller may start the NIC's own set-up beside the load and identity
    // renewal (and must finish it whatever the restore's outcome).
    std::function<void()> on_spare_nic;
};

// 1. manifest verified and checked against this host (nothing starts if it fails) 2. disk cloned
// 3. QEMU started with the memory file mapped share=off and -incoming defer (2-3: or a spare
// taken from request.spares) 4. device state loaded
// 5. identity renewed (entropy, clock, id, hostname; no ARP flush: a Kiln VM has no NIC, or one
// whose neighbour has the same fixed MAC and address in every sandbox, see Vm::renew_identity)
// before anything else reaches the agent.
Result<std::unique_ptr<Vm>> restore_snapshot(const RestoreRequest& request, RestoreTimings* timings = nullptr);

struct ForkTimings {
    double parent_paused_ms = 0;    // the parent's vCPUs stopped (QEMU's STOP to RESUME events)
    int64_t child_started_ms = 0;  // the child's QEMU up (it starts while the parent still runs)
    int64_t child_loaded_ms = 0;   // the child's RAM and device state loaded, vCPUs running
    int64_t child_ready_ms = 0;    // from the start of the fork to the child's identity renewal
    bool spare = false;            // the child is a spare started ahead for the parent's snapshot
};

struct ForkRequest {
    std::string id;
    std::string hostname;
    std::optional<NetDevice> net;  // the child's own NIC: required exactly when the parent has one
    Millis timeout{30000};
    // A parent restored from a snapshot (or forked from one that was) has the snapshot's memory
    // file and shape: with a pool, its child can be that snapshot's spare, which skips QEMU's
    // start-up, and the pool then starts the next spare in the background. Only with an empty id
    // and no NIC, as for restores. Null: the child's QEMU is started for this fork.
    SparePool* spares = nullptr;
    // The parent runs while its RAM is copied and pauses only for the pages it dirtied meanwhile
    // (a live migration, one pass). Where the child's disk cannot be a reflink the fork is never
    // live. False: the parent pauses for the whole copy (the path before; benchmarks compare).
    bool live = true;
};

// Forks a running VM: the parent's RAM is copied while it runs (ForkRequest::live), then it pauses
// while the rest and its device state are streamed out and its disk is cloned, then runs on; the
// child starts from that state with its own identity. The child's
// QEMU starts while the parent still runs, and loads the stream (through a socket pair,
// no file) as the parent writes it. A restored parent's child maps the same snapshot memory file
// copy-on-write.
Result<std::unique_ptr<Vm>> fork_vm(Vm& parent, const ForkRequest& request, ForkTimings* timings = nullptr);

// QEMU's plain path, the whole RAM in the migration stream: the baseline the benchmarks compare
// against (fork streams instead), and how snapshot_any_vm carries a VM into its helper.
// write_full_state freezes the agent and leaves the VM stopped.
Status write_full_state(Vm& vm, const std::string& path, Millis timeout = Millis(60000));
// Starts a VM shaped like `shape` (vcpus, memory, kernel, disk in the new run dir) from such a
// stream; the run dir $DATA/vms/<id> must exist and hold the disk.
Result<std::unique_ptr<Vm>> start_from_full_state(const VmConfig& shape, const std::string& stream, const std::string& id,
                                                  const GuestInfo& guest, Millis timeout = Millis(30000));

}  // namespace kiln::vm
