// VmCgroup: one VM's cgroup in every hierarchy, its limits, its OOM record and its removal.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "base/errno_error.h"
#include "vm/jail/cgroup.h"
#include "vm/jail/cgroup_fs.h"
#include "vm/jail/cgroup_parse.h"

namespace kiln::vm::jail {
namespace {

// The CFS period both versions default to; the quota is whole CPUs of it.
constexpr uint64_t kCpuPeriodUs = 100000;
constexpr uint64_t kMiB = 1024 * 1024;

bool holds(const CgroupHierarchy& hierarchy, const char* controller) {
    return std::find(hierarchy.controllers.begin(), hierarchy.controllers.end(), controller) !=
           hierarchy.controllers.end();
}

// Writes `value` to `dir`/`file` only where the kernel has that file (swap accounting, oom.group
// and io.weight depend on the kernel's build and boot options).
Status write_if_present(const std::string& dir, const char* file, const std::string& value, bool* written = nullptr) {
    const std::string path = dir + "/" + file;
    if (!cgroup_file_exists(path)) return ok_status();
    TRY(write_cgroup_file(path, value));
    if (written) *written = true;
    return ok_status();
}

}  // namespace

Result<std::unique_ptr<VmCgroup>> VmCgroup::create(const CgroupHost& host, const std::string& name,
                                                   const CgroupLimits& limits) {
    if (!valid_cgroup_name(name))
        return make_error(ErrorCode::InvalidArgument, "'" + name + "' is not a valid cgroup name ([A-Za-z0-9_-]{1,128})");
    if (limits.io_weight > 10000)
        return make_error(ErrorCode::InvalidArgument, "io weight " + std::to_string(limits.io_weight) + " is over 10000");
    TRY(prepare_cgroup_parent(host));

    std::unique_ptr<VmCgroup> cgroup(new VmCgroup());
    cgroup->m_version = host.version;
    cgroup->m_name = name;
    cgroup->m_limits = limits;
    // On any failure below, `cgroup` going out of scope removes the folders made so far.
    for (const CgroupHierarchy& hierarchy : host.hierarchies) {
        std::string dir = hierarchy.parent_dir + "/" + name;
        TRY(make_cgroup_dir(dir, false));
        cgroup->m_dirs.push_back(dir);
        cgroup->m_controllers.push_back(hierarchy.controllers);
        if (holds(hierarchy, "memory")) cgroup->m_memory_dir = dir;
    }
    TRY(cgroup->write_limits());
    for (const std::string& dir : cgroup->m_dirs) {
        const std::string path = dir + "/cgroup.procs";
        int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) return errno_error("open " + path);
        cgroup->m_procs_fds.push_back(fd);
    }
    return cgroup;
}

Status VmCgroup::write_limits() {
    const std::string cpu_quota = std::to_string(uint64_t{m_limits.cpus} * kCpuPeriodUs);
    switch (m_version) {
        case CgroupVersion::V1:
            for (size_t i = 0; i < m_dirs.size(); ++i) {
                const std::string& dir = m_dirs[i];
                const std::vector<std::string>& controllers = m_controllers[i];
                auto has = [&](const char* c) { return std::find(controllers.begin(), controllers.end(), c) != controllers.end(); };
                if (has("memory")) {
                    if (m_limits.memory_bytes) {
                        const std::string bytes = std::to_string(m_limits.memory_bytes);
                        TRY(write_cgroup_file(dir + "/memory.limit_in_bytes", bytes));
                        // memsw limits memory + swap: equal to the memory limit, the VM cannot
                        // swap its way past it. Without swap accounting, swappiness 0 keeps the
                        // cgroup's pages out of swap instead.
                        bool memsw = false;
                        TRY(write_if_present(dir, "memory.memsw.limit_in_bytes", bytes, &memsw));
                        if (!memsw) TRY(write_if_present(dir, "memory.swappiness", "0"));
                    }
                    // A new v1 memory cgroup inherits oom_kill_disable from its parent; with it
                    // set, a VM at its limit would hang instead of dying.
                    TRY(write_cgroup_file(dir + "/memory.oom_control", "0"));
                }
                if (has("pids") && m_limits.pids_max)
                    TRY(write_cgroup_file(dir + "/pids.max", std::to_string(m_limits.pids_max)));
                if (has("cpu") && m_limits.cpus) {
                    TRY(write_cgroup_file(dir + "/cpu.cfs_period_us", std::to_string(kCpuPeriodUs)));
                    TRY(write_cgroup_file(dir + "/cpu.cfs_quota_us", cpu_quota));
                }
            }
            return ok_status();
        case CgroupVersion::V2: {
            const std::string& dir = m_dirs.at(0);
            if (m_limits.memory_bytes) {
                TRY(write_cgroup_file(dir + "/memory.max", std::to_string(m_limits.memory_bytes)));
                TRY(write_if_present(dir, "memory.swap.max", "0"));
            }
            // On OOM the kernel kills the whole cgroup, not one process of it: the VM dies whole.
            TRY(write_if_present(dir, "memory.oom.group", "1"));
            if (m_limits.pids_max) TRY(write_cgroup_file(dir + "/pids.max", std::to_string(m_limits.pids_max)));
            if (m_limits.cpus) TRY(write_cgroup_file(dir + "/cpu.max", cpu_quota + " " + std::to_string(kCpuPeriodUs)));
            // io.weight exists only where the io controller was enabled for us and the kernel has
            // a weight-based policy (iocost); elsewhere the weight is left out, as documented.
            if (m_limits.io_weight)
                TRY(write_if_present(dir, "io.weight", "default " + std::to_string(m_limits.io_weight), &m_io_weight_set));
            return ok_status();
        }
    }
    return make_error(ErrorCode::Internal, "unknown cgroup version");
}

Result<bool> VmCgroup::oom_killed() const {
    if (m_removed) return m_oom_killed_at_remove;
    if (m_memory_dir.empty()) return make_error(ErrorCode::Internal, "cgroup " + m_name + " has no memory hierarchy");
    const char* file = m_version == CgroupVersion::V1 ? "memory.oom_control" : "memory.events";
    const std::string path = m_memory_dir + "/" + file;
    std::optional<uint64_t> kills = keyed_value(TRY(read_cgroup_file(path)), "oom_kill");
    if (!kills) return make_error(ErrorCode::Unavailable, path + " has no oom_kill count (Linux before 4.13)");
    return *kills > 0;
}

std::string VmCgroup::describe_limits() const {
    std::string text = "memory ";
    if (m_limits.memory_bytes == 0) text += "unlimited";
    else if (m_limits.memory_bytes % kMiB == 0) text += std::to_string(m_limits.memory_bytes / kMiB) + " MiB";
    else text += std::to_string(m_limits.memory_bytes) + " bytes";
    text += ", pids " + (m_limits.pids_max ? std::to_string(m_limits.pids_max) : std::string("unlimited"));
    text += ", cpu " + (m_limits.cpus ? std::to_string(m_limits.cpus) : std::string("unlimited"));
    if (m_io_weight_set) text += ", io weight " + std::to_string(m_limits.io_weight);
    return text;
}

Status VmCgroup::remove() {
    if (m_removed) return ok_status();
    for (int fd : m_procs_fds) ::close(fd);
    m_procs_fds.clear();
    // Read before the memory cgroup goes, so the caller can still tell an OOM kill afterwards.
    if (!m_oom_checked) {
        Result<bool> killed = oom_killed();
        m_oom_killed_at_remove = killed.ok() && *killed;
        m_oom_checked = true;
    }
    Status first_failure = ok_status();
    for (const std::string& dir : m_dirs) {
        Status removed = kill_and_remove_cgroup(dir, kCgroupEmptyBudget);
        if (!removed.ok() && first_failure.ok()) first_failure = removed;
    }
    if (first_failure.ok()) m_removed = true;
    return first_failure;
}

VmCgroup::~VmCgroup() { (void)remove(); }

}  // namespace kiln::vm::jail
