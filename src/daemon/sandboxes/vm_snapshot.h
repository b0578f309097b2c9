// Snapshots of any sandbox VM. vm::take_snapshot needs RAM in a shared file, which a booted
// template VM has but a restored sandbox does not (it maps its snapshot's memory copy-on-write);
// for those, the RAM is carried over into a short-lived snapshottable helper VM first.
#pragma once

#include "base/result.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

namespace kiln::daemon {

// request.resume is honoured for `vm` (it runs on afterwards when true).
Result<vm::SnapshotManifest> snapshot_vm(vm::Vm& vm, const vm::SnapshotRequest& request);

}  // namespace kiln::daemon
