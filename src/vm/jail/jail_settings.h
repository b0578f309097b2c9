// How Kiln confines every QEMU it starts: set once by kilnd (or read from the environment by the
// CLI, tests and benchmarks), read by every launch.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "vm/jail/uid_lease.h"

namespace kiln::vm::jail {

struct JailSettings {
    // Without root (or with an unusable seccomp), VMs are refused unless this is set; then they run
    // unconfined and every health report says so (confinement_report()).
    bool allow_unconfined = false;
    // false: no jail even as root (benchmarks' unjailed baseline, debugging); needs allow_unconfined.
    bool jail = true;
    UidRange uids{2000000000, 65536};  // jail_uid_base, jail_uid_count
    std::string lock_dir = "/run/kiln/jail-uids";
    std::string cgroup_name = "kiln";     // each VM's cgroup is <parent>/<cgroup_name>/<vm name>
    // A VM's memory limit: guest RAM + TCG's translation cache (tcg_tb_mib) + this (QEMU's own
    // heap, its libraries' pages, virtio queues). Measured in docs/security.md.
    uint32_t memory_overhead_mib = 96;
    uint32_t memory_limit_mib = 0;        // a fixed limit for every VM instead (tests: a tiny one); 0: computed
    uint32_t max_threads = 128;           // pids.max and RLIMIT_NPROC (QEMU's thread pool is 64)
};

// The settings every launch uses. Defaults, then KILN_ALLOW_UNCONFINED=1, KILN_JAIL=0, KILN_JAIL_UID_BASE,
// KILN_JAIL_UID_COUNT, KILN_VM_MEMORY_OVERHEAD_MIB and KILN_VM_MEMORY_LIMIT_MIB from the environment (read once), unless
// set_jail_settings was called first (kilnd, from its config).
JailSettings jail_settings();
void set_jail_settings(const JailSettings& settings);

// What confines VMs on this host, for kiln doctor, /healthz and /metrics: "" when every VM runs
// jailed under seccomp; otherwise why not (and whether allow_unconfined lets VMs run anyway).
struct Confinement {
    bool jailed = false;   // VMs run in the jail (root, namespaces, cgroups work)
    bool seccomp = false;  // QEMU's -sandbox works
    bool cgroups = false;  // a cgroup per VM can be made (v2, or v1 memory+pids+cpu)
    bool allowed = false;  // VMs may start (confined, or unconfined by allow_unconfined)
    std::string problem;   // empty when jailed && seccomp
};
Confinement confinement();

// The launch-time check: ok when VMs may start; the refusal otherwise (ErrorCode::Unavailable).
Status check_confinement();

}  // namespace kiln::vm::jail
