// cgroup_host, cgroup_prefix, vm_cgroup_limits, sweep_vm_cgroups (see vm_cgroups.h).
#include "vm/jail/vm_cgroups.h"

#include <mutex>
#include <optional>

#include "base/sha256.h"
#include "vm/guest_artifacts.h"
#include "vm/jail/jail_settings.h"

namespace kiln::vm::jail {

Result<const CgroupHost*> cgroup_host() {
    static std::mutex mutex;
    static std::optional<CgroupHost> host;
    std::lock_guard lock(mutex);
    if (host) return &*host;
    CgroupOptions options;
    options.root_name = jail_settings().cgroup_name;
    auto found = TRY(detect_cgroups(options));
    TRY(prepare_cgroup_parent(found));
    host = std::move(found);
    return &*host;
}

std::string cgroup_prefix() { return "k" + sha256_hex(data_dir()).substr(0, 8) + "-"; }

CgroupLimits vm_cgroup_limits(uint32_t memory_mib, uint32_t vcpus, uint32_t tcg_tb_mib) {
    JailSettings s = jail_settings();
    uint64_t mib = s.memory_limit_mib ? s.memory_limit_mib : uint64_t(memory_mib) + tcg_tb_mib + s.memory_overhead_mib;
    CgroupLimits limits;
    limits.memory_bytes = mib << 20;
    limits.pids_max = s.max_threads;
    limits.cpus = vcpus + 1;
    return limits;
}

Result<int> sweep_vm_cgroups() {
    const CgroupHost* host = TRY(cgroup_host());
    return sweep_cgroups(*host, cgroup_prefix());
}

}  // namespace kiln::vm::jail
