// jail_spec_for: a VmConfig's jail (see vm_jail.h, docs/security.md).
#include "vm/vm_jail.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errno_error.h"
#include "vm/jail/jail_settings.h"
#include "vm/sealed_memory.h"

namespace kiln::vm {
namespace {

// Gives a file or directory QEMU must write to the jail uid, without following a link.
Status give_to(const std::string& path, uid_t uid, gid_t gid) {
    if (::fchownat(AT_FDCWD, path.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0) return errno_error("jail: chown " + path);
    return ok_status();
}

bool under(const std::string& path, const std::string& dir) {
    return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

}  // namespace

Result<jail::JailSpec> jail_spec_for(const VmConfig& config, const RunPaths& paths, const jail::UidLease& lease,
                                     const std::vector<std::string>& argv, int log_fd, bool die_with_parent) {
    jail::JailSpec spec;
    spec.uid = lease.uid();
    spec.gid = lease.gid();
    TRY(give_to(paths.jail, spec.uid, spec.gid));
    if (!under(config.rootfs_path, paths.jail))
        return make_error(ErrorCode::InvalidArgument, "jail: the disk " + config.rootfs_path + " is not in the VM's jail dir " + paths.jail);
    TRY(give_to(config.rootfs_path, spec.uid, spec.gid));
    spec.binds.push_back({paths.jail, /*writable=*/true});
    if (!config.incoming_defer) spec.binds.push_back({config.kernel_path, false});
    if (config.memory_file && config.memory_file->share && !under(config.memory_file->path, paths.jail))
        return make_error(ErrorCode::InvalidArgument, "jail: the shared memory file " + config.memory_file->path +
                                                          " is not in the VM's jail dir");
    if (!under(argv[0], "/usr")) spec.binds.push_back({argv[0], false});
    if (config.accel == Accel::Kvm) {
        struct stat st {};
        if (::stat("/dev/kvm", &st) != 0) return errno_error("jail: /dev/kvm");
        spec.devices.push_back("/dev/kvm");
        if (st.st_gid != 0) spec.groups.push_back(st.st_gid);
    }
    spec.argv = argv;
    spec.cwd = paths.jail;
    spec.stdout_fd = log_fd;
    spec.die_with_parent = die_with_parent;
    spec.keep_fds.push_back(lease.qemu_lock_fd());
    if (config.net) spec.keep_fds.push_back(config.net->tap_fd);
    if (config.memory_file && config.memory_file->sealed) spec.keep_fds.push_back(config.memory_file->sealed->fd());
    spec.max_processes = jail::jail_settings().max_threads;
    spec.hostname = config.name.empty() ? "kiln-vm" : config.name;
    return spec;
}

}  // namespace kiln::vm
