// UidLease: one unprivileged uid (and the gid of the same number) from the range Kiln owns, held
// by one VM and never given to another while that VM's QEMU lives.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kiln::vm::jail {

struct UidRange {
    uid_t base = 0;
    uint32_t count = 0;
};

// A uid is leased by exclusive flocks on two files, `<lock_dir>/<uid>` (held by this lease) and
// `<lock_dir>/<uid>.qemu` (held by this lease and inherited by the jailed QEMU: a lock belongs to
// the open file, so it holds while any copy of the fd is open). A uid is thus free only when both
// the owner and its QEMU are gone: across processes (two kilnds, a test beside kilnd) and across a
// kill -9 of kilnd while its QEMU runs on. A QEMU that unlocks its file frees nothing while its
// owner lives. Leases start after the last uid given, so a freed uid is the last to be reused.
class UidLease {
public:
    static Result<std::unique_ptr<UidLease>> take(const UidRange& range, const std::string& lock_dir);
    ~UidLease() = default;
    UidLease(const UidLease&) = delete;
    UidLease& operator=(const UidLease&) = delete;

    uid_t uid() const { return m_uid; }
    gid_t gid() const { return static_cast<gid_t>(m_uid); }
    int qemu_lock_fd() const { return m_qemu_lock.get(); }  // for the QEMU to inherit

private:
    UidLease(uid_t uid, UniqueFd lock, UniqueFd qemu_lock)
        : m_uid(uid), m_lock(std::move(lock)), m_qemu_lock(std::move(qemu_lock)) {}
    uid_t m_uid;
    UniqueFd m_lock;
    UniqueFd m_qemu_lock;
};

// Whether `uid` is leased now by anyone (a probe: takes and drops the lock at once).
bool uid_leased(const std::string& lock_dir, uid_t uid);

}  // namespace kiln::vm::jail
