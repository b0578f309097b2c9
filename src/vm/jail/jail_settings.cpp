// jail_settings, confinement: the process-wide jail configuration and what this host allows.
#include "vm/jail/jail_settings.h"

#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <optional>

#include "vm/jail/vm_cgroups.h"
#include "vm/qemu_version.h"

namespace kiln::vm::jail {
namespace {

std::mutex g_mutex;
std::optional<JailSettings> g_settings;

template <typename T>
void env_number(const char* name, T& out) {
    const char* v = std::getenv(name);
    if (!v || !*v) return;
    char* end = nullptr;
    unsigned long long n = std::strtoull(v, &end, 10);
    if (end && *end == '\0' && n > 0) out = static_cast<T>(n);
}

JailSettings from_environment() {
    JailSettings s;
    const char* unconfined = std::getenv("KILN_ALLOW_UNCONFINED");
    s.allow_unconfined = unconfined && std::string(unconfined) == "1";
    const char* jail = std::getenv("KILN_JAIL");
    s.jail = !(jail && std::string(jail) == "0");
    env_number("KILN_JAIL_UID_BASE", s.uids.base);
    env_number("KILN_JAIL_UID_COUNT", s.uids.count);
    env_number("KILN_VM_MEMORY_OVERHEAD_MIB", s.memory_overhead_mib);
    env_number("KILN_VM_MEMORY_LIMIT_MIB", s.memory_limit_mib);
    return s;
}

}  // namespace

JailSettings jail_settings() {
    std::lock_guard lock(g_mutex);
    if (!g_settings) g_settings = from_environment();
    return *g_settings;
}

void set_jail_settings(const JailSettings& settings) {
    std::lock_guard lock(g_mutex);
    g_settings = settings;
}

Confinement confinement() {
    Confinement c;
    JailSettings s = jail_settings();
    c.jailed = s.jail && ::geteuid() == 0;
    auto qemu = qemu_info();
    c.seccomp = qemu.ok() && qemu->sandbox;
    std::string problem;
    if (!s.jail) problem = "the jail is switched off (jail=false)";
    else if (!c.jailed) problem = "kilnd is not root, so it cannot jail QEMU (own uid, namespaces, pivot_root, cgroups)";
    if (c.jailed) {
        auto host = cgroup_host();
        c.cgroups = host.ok();
        if (!host.ok()) problem = "no cgroup per VM: " + host.error().message;
    }
    if (!c.seccomp) {
        if (!problem.empty()) problem += "; ";
        problem += qemu.ok() ? "QEMU's -sandbox (seccomp) failed its start-up probe" : "QEMU cannot run: " + qemu.error().message;
    }
    c.allowed = problem.empty() || s.allow_unconfined;
    if (!problem.empty())
        c.problem = problem + (s.allow_unconfined ? "; VMs run UNCONFINED because allow_unconfined is set"
                                                  : "; VMs are refused (set allow_unconfined=true to run them unconfined)");
    return c;
}

Status check_confinement() {
    Confinement c = confinement();
    if (!c.allowed) return make_error(ErrorCode::Unavailable, c.problem);
    return ok_status();
}

}  // namespace kiln::vm::jail
