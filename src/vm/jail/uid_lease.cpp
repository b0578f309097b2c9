// UidLease: flock-held leases on uids of Kiln's range (see uid_lease.h).
#include "vm/jail/uid_lease.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <optional>
#include <utility>

#include "base/errno_error.h"
#include "base/file_util.h"

namespace kiln::vm::jail {
namespace {

std::atomic<uint32_t> g_next{0};  // where the next search starts, per process

UniqueFd open_lock(const std::string& lock_dir, uid_t uid, const char* suffix = "") {
    std::string path = lock_dir + "/" + std::to_string(uid) + suffix;
    return UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
}

// Both locks of `uid`, or nothing (busy); an error only when a lock file cannot be opened.
Result<std::optional<std::pair<UniqueFd, UniqueFd>>> try_lock(const std::string& lock_dir, uid_t uid) {
    UniqueFd lock = open_lock(lock_dir, uid);
    UniqueFd qemu_lock = open_lock(lock_dir, uid, ".qemu");
    if (!lock || !qemu_lock) return errno_error("jail uid lease: open a lock file in " + lock_dir);
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) return std::optional<std::pair<UniqueFd, UniqueFd>>();
    if (::flock(qemu_lock.get(), LOCK_EX | LOCK_NB) != 0) return std::optional<std::pair<UniqueFd, UniqueFd>>();
    return std::optional(std::pair(std::move(lock), std::move(qemu_lock)));
}

}  // namespace

Result<std::unique_ptr<UidLease>> UidLease::take(const UidRange& range, const std::string& lock_dir) {
    if (range.base == 0 || range.count == 0)
        return make_error(ErrorCode::InvalidArgument, "jail uid range: base and count must be above 0");
    TRY(make_dirs(lock_dir, 0700));
    uint32_t start = g_next.fetch_add(1) % range.count;
    for (uint32_t i = 0; i < range.count; ++i) {
        uint32_t offset = (start + i) % range.count;
        uid_t uid = range.base + offset;
        auto locks = TRY(try_lock(lock_dir, uid));
        if (locks) {
            g_next.store(offset + 1);
            return std::unique_ptr<UidLease>(new UidLease(uid, std::move(locks->first), std::move(locks->second)));
        }
    }
    return make_error(ErrorCode::ResourceExhausted, "every uid of the jail range (" + std::to_string(range.base) + ", " +
                                                        std::to_string(range.count) +
                                                        " of them) is held by a running VM; raise jail_uid_count");
}

bool uid_leased(const std::string& lock_dir, uid_t uid) {
    auto locks = try_lock(lock_dir, uid);
    return locks.ok() && !*locks;
}

}  // namespace kiln::vm::jail
