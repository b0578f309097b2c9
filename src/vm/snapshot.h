// Snapshot, restore and fork of running VMs. Restores map the snapshot's memory file
// copy-on-write (MAP_PRIVATE) and load only device state; disks are reflink clones.
// See docs/snapshots.md for the measured trade-offs and docs/snapshot-format.md for the files.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "vm/snapshot_manifest.h"
#include "vm/vm.h"

namespace kiln::vm {

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
    bool spare = false;         // a QEMU started ahead for this snapshot was used (steps 2-3 done)
};

struct RestoreRequest {
    std::string snapshot_dir;
    std::string id;        // empty: random
    std::string hostname;  // empty: kiln-<id>
    VerifyLevel verify = VerifyLevel::Sizes;
    Millis timeout{30000};
    // Use the spare QEMU started ahead for this snapshot, if there is one (only with an empty id:
    // a spare comes with its own), and start the next one in the background once this VM is
    // ready. See prepare_spare().
    bool keep_spare = false;
    // The NIC, required when the snapshot was taken with one and refused otherwise (the device
    // set must match the saved state). A restore with a NIC never uses a spare: the tap fd must
    // be there when QEMU starts.
    std::optional<NetDevice> net;
};

// 1. manifest verified and checked against this host (nothing starts if it fails) 2. disk cloned
// 3. QEMU started with the memory file mapped share=off and -incoming defer (2-3: or a spare
// taken, with keep_spare) 4. device state loaded
// 5. identity renewed (entropy, clock, id, hostname; no ARP flush: Kiln VMs have no NIC) before
// anything else reaches the agent.
Result<std::unique_ptr<Vm>> restore_snapshot(const RestoreRequest& request, RestoreTimings* timings = nullptr);

// A spare is a QEMU started ahead for one snapshot: its run dir, its reflink of the disk, the
// memory file mapped copy-on-write, QMP/console/agent connected, the state file's fd passed and
// -incoming defer. It holds no guest state (no vCPU ran, no guest page was touched); it costs one
// idle QEMU process (~16 MiB PSS measured beside 5 clones: count it in density figures, see
// spare_pids()). A restore with keep_spare takes it and skips QEMU's start-up (~40 ms under
// TCG); the restore still verifies the snapshot, and a spare whose snapshot files changed is
// dropped. At most one spare per snapshot directory, started by one background thread.
void prepare_spare(const std::string& snapshot_dir);
// Stops the spares of `snapshot_dir` (all spares if empty). Done for all at process exit.
void discard_spares(const std::string& snapshot_dir = {});
// The QEMU pids of the spares waiting now.
std::vector<pid_t> spare_pids();

struct ForkTimings {
    int64_t parent_paused_ms = 0;
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
    // file and shape: its child can be that snapshot's spare (see prepare_spare), which skips
    // QEMU's start-up, and the next spare is then started in the background. Only with an empty id
    // and no NIC, as for restores.
    bool use_spare = false;
};

// Forks a running VM: the parent pauses while its device state and RAM are streamed out and its
// disk is cloned, then runs on; the child starts from that state with its own identity. The child's
// QEMU starts while the parent still runs, and loads the stream (through a socket pair,
// no file) as the parent writes it. A restored parent's child maps the same snapshot memory file
// copy-on-write.
Result<std::unique_ptr<Vm>> fork_vm(Vm& parent, const ForkRequest& request, ForkTimings* timings = nullptr);

// QEMU's plain path, kept as the baseline the benchmarks compare against (fork streams instead): the
// whole RAM in the migration stream. write_full_state leaves the VM stopped.
Status write_full_state(Vm& vm, const std::string& path, Millis timeout = Millis(60000));
// Starts a VM shaped like `shape` (vcpus, memory, kernel, disk in the new run dir) from such a
// stream; the run dir $DATA/vms/<id> must exist and hold the disk.
Result<std::unique_ptr<Vm>> start_from_full_state(const VmConfig& shape, const std::string& stream, const std::string& id,
                                                  const GuestInfo& guest, Millis timeout = Millis(30000));

}  // namespace kiln::vm
