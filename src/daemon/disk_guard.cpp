// DiskGuard: the free-space floor for new work (see disk_guard.h).
#include "daemon/disk_guard.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "base/errno_error.h"
#include "base/json_log.h"

namespace kiln::daemon {

Result<DiskSpace> statvfs_space(const std::string& path) {
    struct statvfs vfs {};
    if (::statvfs(path.c_str(), &vfs) != 0) return errno_error("statvfs " + path);
    return DiskSpace{static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize, static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize};
}

std::string human_bytes(uint64_t bytes) {
    char text[32];
    if (bytes >= (1ull << 30)) std::snprintf(text, sizeof text, "%.1f GiB", double(bytes) / double(1ull << 30));
    else std::snprintf(text, sizeof text, "%llu MiB", static_cast<unsigned long long>(bytes >> 20));
    return text;
}

DiskGuard::DiskGuard(std::string data_dir, DiskFloor floor, Probe probe)
    : m_dir(std::move(data_dir)), m_floor(floor), m_probe(std::move(probe)) {}

Result<DiskReading> DiskGuard::read() const {
    DiskReading r;
    r.space = TRY(m_probe(m_dir));
    uint64_t by_percent = r.space.total_bytes / 100 * m_floor.min_free_percent;
    r.required_free_bytes = std::max(m_floor.min_free_bytes, by_percent);
    r.ok = r.space.free_bytes >= r.required_free_bytes;
    return r;
}

Status DiskGuard::check(std::string_view what) const {
    auto r = read();
    if (!r.ok()) {
        log::warn("free disk space unknown; work allowed", {{"error", r.error().message}});
        return ok_status();
    }
    if (r->ok) return ok_status();
    // Logged here with the numbers; the message names no path (the caller may be any token).
    log::warn("refused for lack of disk space", {{"work", what}, {"free_bytes", r->space.free_bytes},
                                                 {"required_free_bytes", r->required_free_bytes}});
    return make_error(ErrorCode::Unavailable,
                      "not enough free disk space to " + std::string(what) + ": " + human_bytes(r->space.free_bytes) +
                          " free on kilnd's data disk, and kilnd keeps at least " + human_bytes(r->required_free_bytes) +
                          " free (min_free_disk_mib, min_free_disk_percent); retry once space is freed");
}

}  // namespace kiln::daemon
