// Snapshots of any sandbox VM. vm::take_snapshot needs RAM in a shared file, which a booted
// template VM has but a restored sandbox does not (it maps its snapshot's memory copy-on-write);
// for those, the RAM is carried over into a short-lived snapshottable helper VM first.
#pragma once

#include <optional>

#include "base/result.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

namespace kiln::daemon {

// request.resume is honoured for `vm` (it runs on afterwards when true). A `vm` with a NIC needs
// `helper_nic`: the helper VM must have the same device set (the caller owns the tap).
Result<vm::SnapshotManifest> snapshot_vm(vm::Vm& vm, const vm::SnapshotRequest& request,
                                         std::optional<vm::NetDevice> helper_nic = std::nullopt);

}  // namespace kiln::daemon
