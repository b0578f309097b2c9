// This process's VM cgroups: the host's cgroup layout found once, the prefix that marks this data
// dir's VMs, each VM's limits from its config, and the sweep of what a crash left.
#pragma once

#include <string>

#include "base/result.h"
#include "vm/jail/cgroup.h"

namespace kiln::vm::jail {

// detect_cgroups() and prepare_cgroup_parent() once (retried after a failure), with the settings'
// cgroup_name as kiln's parent.
Result<const CgroupHost*> cgroup_host();

// "k<8 hex of SHA-256(data dir)>-": every VM cgroup of this data dir starts with it, so one kilnd's
// sweep never touches another's VMs (a second kilnd, a test beside it).
std::string cgroup_prefix();

// A VM's limits: memory = guest RAM + TCG's translation cache (when under TCG) +
// memory_overhead_mib, or the settings' memory_limit_mib when set; pids = max_threads; CPU = its
// vCPUs + 1 (QEMU's main loop and I/O threads run beside the vCPU threads).
CgroupLimits vm_cgroup_limits(uint32_t memory_mib, uint32_t vcpus, uint32_t tcg_tb_mib);

// At kilnd's start, after its reconcile: the cgroups of this data dir's VMs that a crash left,
// their processes killed. How many were removed.
Result<int> sweep_vm_cgroups();

}  // namespace kiln::vm::jail
