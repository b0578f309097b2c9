// DiskGuard: refuses new work before kilnd's disk is full. A create, fork, snapshot, bake or CI
// job writes gigabytes under the data dir; one that starts on a nearly full disk fails half way
// (a snapshot cut short, a checkout tar truncated) and can starve SQLite of the room its journal
// needs. So each asks first, and is refused with `unavailable` (503) naming the shortage in
// bytes, never a host path, while the data dir's filesystem has less free than the floor.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace kiln::daemon {

struct DiskSpace {
    uint64_t free_bytes = 0;   // available to kilnd (statvfs f_bavail: the root reserve is not counted)
    uint64_t total_bytes = 0;
};

// How much is free on the filesystem holding `path` (statvfs).
Result<DiskSpace> statvfs_space(const std::string& path);

struct DiskFloor {
    uint64_t min_free_bytes = 2048ull << 20;  // min_free_disk_mib
    uint32_t min_free_percent = 2;            // min_free_disk_percent, of the filesystem's size
};

// The reading a check is made from, for /healthz.
struct DiskReading {
    DiskSpace space;
    uint64_t required_free_bytes = 0;  // the larger of the floor's two, for this filesystem
    bool ok = true;
};

class DiskGuard {
public:
    using Probe = std::function<Result<DiskSpace>(const std::string& path)>;

    // `probe` is statvfs_space but for tests, which give it chosen numbers.
    DiskGuard(std::string data_dir, DiskFloor floor, Probe probe = statvfs_space);

    // Ok, or unavailable: "not enough free disk space to <what>: ...". When the filesystem cannot
    // be read the work is allowed (and logged): refusing everything for that would be worse.
    Status check(std::string_view what) const;
    Result<DiskReading> read() const;

private:
    const std::string m_dir;
    const DiskFloor m_floor;
    const Probe m_probe;
};

// "1.5 GiB", "312 MiB": for messages.
std::string human_bytes(uint64_t bytes);

}  // namespace kiln::daemon
