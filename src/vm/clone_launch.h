// Starting the QEMU of a VM made from saved state (a restore, a spare, a fork child): its run dir,
// its config, and for a snapshot the QEMU that waits for the snapshot's device state.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "vm/guest_artifacts.h"
#include "vm/snapshot_manifest.h"
#include "vm/vm.h"

namespace kiln::vm {

// The config shared by restores and fork children: the source's shape, this VM's run dir, QEMU
// waiting for migrate-incoming; no memory file and no NIC (each clone is given its own).
VmConfig clone_config(const VmConfig& source, const std::string& run_dir);

// Creates $DATA/vms/<id> and its jail dir (RunPaths).
Result<std::string> new_run_dir(const std::string& id);

// Steps 2-3 of a restore, all that can happen before the device state loads: the run dir, a
// reflink of the snapshot's disk, QEMU started with the memory file mapped copy-on-write and
// -incoming defer, QMP/console/agent connected, migration capabilities set and the state file's
// fd handed to QEMU. After this only the load is left (load_snapshot_state).
Result<std::unique_ptr<Vm>> launch_for_snapshot(const std::string& snapshot_dir, const SnapshotManifest& manifest,
                                                const KernelArtifact& kernel, const std::string& id,
                                                const std::optional<NetDevice>& net = std::nullopt);

// Step 4 of a restore: the device state from the fd passed by launch_for_snapshot (RAM is the
// mapped file), then the vCPUs run.
Status load_snapshot_state(Vm& vm, Millis timeout);

// A warm spare (spare_pool.h), after launch_for_snapshot: the state loaded, the identity renewed
// with the spare's own throwaway values, Kiln's warm-up commands run (a shell with output, a
// direct exec), then the vCPUs stopped. No tenant's command has reached it.
Status warm_up_spare(Vm& vm);
// What a restore does to a warm spare in place of load_snapshot_state: its vCPUs run again.
// renew_identity() follows, as after every restore.
Status resume_warm_spare(Vm& vm);

}  // namespace kiln::vm
