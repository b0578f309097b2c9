// Kiln's seccomp denylist for jailed QEMUs, compiled with libseccomp and exported as BPF.
#include "vm/jail/seccomp_filter.h"

#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>

#include "base/unique_fd.h"

namespace kiln::vm::jail {
namespace {

// Denied with EPERM: nothing in QEMU's work for Kiln uses them.
constexpr const char* kDenied[] = {
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "bpf", "userfaultfd", "perf_event_open", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key", "ptrace", "process_vm_readv",
    "process_vm_writev", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "open_by_handle_at", "name_to_handle_at", "acct", "swapon", "swapoff", "reboot", "syslog", "quotactl",
    "lookup_dcookie", "vhangup", "iopl", "ioperm", "pidfd_getfd", "fanotify_init",
};

constexpr uint64_t kNamespaceFlags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
                                     CLONE_NEWNET | CLONE_NEWCGROUP;  // CLONE_NEWTIME is clone3-only (its bit is CSIGNAL's in clone)

Result<SeccompProgram> build() {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return make_error(ErrorCode::Internal, "seccomp_init failed");
    struct Release {
        scmp_filter_ctx ctx;
        ~Release() { seccomp_release(ctx); }
    } release{ctx};
    auto fail = [](const std::string& what, int rc) {
        return make_error(ErrorCode::Internal, "seccomp filter: " + what + ": " + std::strerror(-rc));
    };
    for (const char* name : kDenied) {
        int nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
        if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0); rc != 0) return fail(name, rc);
    }
    // clone with any namespace flag: EPERM (one rule per flag: a rule matches a masked equality).
    // Threads (CLONE_THREAD|CLONE_VM|...) pass.
    for (uint64_t flag = 1; flag != 0; flag <<= 1) {
        if (!(kNamespaceFlags & flag)) continue;
        if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag));
            rc != 0)
            return fail("clone", rc);
    }
    // clone3 passes its flags in memory a filter cannot read: ENOSYS makes glibc use clone.
    if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0); rc != 0) return fail("clone3", rc);
    // The filter must not stop this very process from exec'ing QEMU: execve stays allowed here
    // (QEMU's own -sandbox spawn=deny forbids it after start-up).
    UniqueFd out(::memfd_create("kiln-seccomp", MFD_CLOEXEC));
    if (!out) return make_error(ErrorCode::Internal, std::string("memfd_create: ") + std::strerror(errno));
    if (int rc = seccomp_export_bpf(ctx, out.get()); rc != 0) return fail("export", rc);
    off_t size = ::lseek(out.get(), 0, SEEK_END);
    if (size <= 0 || size % sizeof(sock_filter) != 0) return make_error(ErrorCode::Internal, "seccomp filter: bad BPF size");
    SeccompProgram program;
    program.instructions.resize(size / sizeof(sock_filter));
    if (::pread(out.get(), program.instructions.data(), size, 0) != size)
        return make_error(ErrorCode::Internal, "seccomp filter: cannot read the BPF back");
    return program;
}

}  // namespace

Result<const SeccompProgram*> kiln_seccomp_program() {
    static std::once_flag once;
    static std::optional<Result<SeccompProgram>> built;
    std::call_once(once, [] { built.emplace(build()); });
    if (!built->ok()) return built->error();
    return &**built;
}

}  // namespace kiln::vm::jail
