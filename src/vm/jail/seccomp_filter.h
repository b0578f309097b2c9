// Kiln's own seccomp filter for a jailed QEMU, stacked under QEMU's `-sandbox` (docs/security.md).
#pragma once

#include <linux/filter.h>

#include <vector>

#include "base/result.h"

namespace kiln::vm::jail {

// A compiled classic-BPF program, ready for prctl(PR_SET_SECCOMP) in a child that may not
// allocate.
struct SeccompProgram {
    std::vector<sock_filter> instructions;
    sock_fprog fprog() const {
        return sock_fprog{static_cast<unsigned short>(instructions.size()), const_cast<sock_filter*>(instructions.data())};
    }
};

// QEMU's -sandbox is a denylist of what QEMU itself never does (obsolete calls, set*id, fork and
// exec, resource control). This filter adds what a jailed QEMU never needs and what widens the
// kernel's attack surface most for an attacker who took QEMU: namespaces (unshare, setns, clone
// with a CLONE_NEW* flag: a user namespace would hand it every capability inside), mounts,
// pivot_root/chroot, bpf, userfaultfd, perf_event_open, io_uring, keyrings, ptrace and
// process_vm_*, kernel modules and kexec, open_by_handle_at, and clone3 (ENOSYS, so glibc's
// threads fall back to clone, whose flags the filter can see). Everything else is allowed: QEMU's
// own filter and the jail decide the rest. Built once per process (libseccomp), exported as BPF.
Result<const SeccompProgram*> kiln_seccomp_program();

}  // namespace kiln::vm::jail
