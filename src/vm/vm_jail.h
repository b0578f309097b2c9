// The jail of one VM's QEMU: what it may see and hold, built from its VmConfig (jail_spawn.h).
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "vm/jail/jail_spawn.h"
#include "vm/jail/uid_lease.h"
#include "vm/qemu_command.h"

namespace kiln::vm {

// The VM's jail dir (writable, owned by the lease's uid), the kernel it boots (read-only), the
// QEMU binary if it lives outside /usr, /dev/kvm under KVM (with its group); the tap, the sealed
// memory and the lease's lock fds; the log as stdout and stderr; no environment. Gives the jail
// dir and the disk clone to the lease's uid.
Result<jail::JailSpec> jail_spec_for(const VmConfig& config, const RunPaths& paths, const jail::UidLease& lease,
                                     const std::vector<std::string>& argv, int log_fd, bool die_with_parent);

}  // namespace kiln::vm
