// snapshot_any_vm: a snapshot of any VM, whatever backs its RAM. take_snapshot() needs RAM in a
// shared file, which a VM booted snapshottable has but a restored or forked one does not (its RAM
// maps a snapshot's memory copy-on-write, or is anonymous); for those, the whole state is carried
// over into a short-lived snapshottable helper VM first, and the helper is snapshotted.
#pragma once

#include <optional>

#include "base/result.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

namespace kiln::vm {

// request.resume is honoured for `vm` (it runs on afterwards, identity renewed, when true). A `vm`
// with a NIC needs `helper_nic`: the helper VM must have the same device set (the caller owns the
// tap, and may close it once this returns).
Result<SnapshotManifest> snapshot_any_vm(Vm& vm, const SnapshotRequest& request,
                                         std::optional<NetDevice> helper_nic = std::nullopt);

}  // namespace kiln::vm
