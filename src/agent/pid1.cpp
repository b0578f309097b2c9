// PID 1 setup: mount the kernel file systems, name the host, bring up lo, and make signals safe for init.
#include "agent/pid1.h"

#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "agent/exec_child.h"
#include "agent/log.h"
#include "base/unique_fd.h"

namespace kiln::agent {
namespace {

void warn(const std::string& what) { log_line(what + ": " + std::strerror(errno)); }

// True when `path` is the root of a mount (its device differs from its parent's).
bool is_mount_point(const std::string& path) {
    struct stat self, parent;
    if (stat(path.c_str(), &self) != 0) return false;
    if (stat((path + "/..").c_str(), &parent) != 0) return false;
    return self.st_dev != parent.st_dev || self.st_ino == parent.st_ino;
}

// False when the mount failed (logged unless `quiet`).
bool mount_once(const char* source, const char* target, const char* type, unsigned long flags, const char* data,
                mode_t dir_mode = 0755, bool quiet = false) {
    if (mkdir(target, dir_mode) != 0 && errno != EEXIST) warn(std::string("mkdir ") + target);
    if (is_mount_point(target)) return true;  // e.g. /dev, mounted by the kernel (DEVTMPFS_MOUNT)
    if (mount(source, target, type, flags, data) == 0) return true;
    if (!quiet) warn(std::string("mount ") + type + " on " + target);
    return false;
}

// fds 0-2 must be open, or the first pipes of an exec would land on them.
void ensure_stdio() {
    for (int fd = 0; fd <= 2; ++fd) {
        if (fcntl(fd, F_GETFD) >= 0) continue;
        int opened = open("/dev/console", O_RDWR | O_NOCTTY);
        if (opened < 0) opened = open("/dev/null", O_RDWR);
        if (opened >= 0 && opened != fd) {
            dup2(opened, fd);
            close(opened);
        }
    }
}

void bring_up_loopback() {
    UniqueFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!sock) return warn("socket for lo");
    struct ifreq request;
    std::memset(&request, 0, sizeof request);
    std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(sock.get(), SIOCGIFFLAGS, &request) != 0) return warn("read the flags of lo");
    request.ifr_flags |= IFF_UP;
    if (ioctl(sock.get(), SIOCSIFFLAGS, &request) != 0) warn("bring up lo");
}

}  // namespace

std::string setup_pid1() {
    // Signals: SIGCHLD arrives through the server's signalfd; init ignores the terminal and
    // termination signals; SIGPIPE becomes EPIPE. Exec children reset all of these.
    for (int sig : {SIGPIPE, SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2, SIGTSTP, SIGTTIN, SIGTTOU})
        signal(sig, SIG_IGN);
    reboot(RB_DISABLE_CAD);  // Ctrl-Alt-Del becomes a SIGINT to us, which we ignore
    umask(022);

    const unsigned long nosuid_nodev_noexec = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    mount_once("proc", "/proc", "proc", nosuid_nodev_noexec, nullptr);
    mount_once("sysfs", "/sys", "sysfs", nosuid_nodev_noexec, nullptr);
    mount_once("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    ensure_stdio();
    mount_once("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666");
    mount_once("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777);
    mount_once("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777);
    mount_once("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    // favordynmods (Linux 6.0+): moving a process into a cgroup (every exec joins its leaf) then
    // no longer waits for an RCU grace period, up to ~10 ms under emulation. Older kernels: without.
    if (!mount_once("cgroup2", kCgroupMount, "cgroup2", nosuid_nodev_noexec, "favordynmods", 0755, /*quiet=*/true))
        mount_once("cgroup2", kCgroupMount, "cgroup2", nosuid_nodev_noexec, nullptr);
    const char* links[][2] = {{"/proc/self/fd", "/dev/fd"},
                              {"/proc/self/fd/0", "/dev/stdin"},
                              {"/proc/self/fd/1", "/dev/stdout"},
                              {"/proc/self/fd/2", "/dev/stderr"}};
    for (auto& link : links)
        if (symlink(link[0], link[1]) != 0 && errno != EEXIST) warn(std::string("symlink ") + link[1]);

    if (sethostname("kiln", 4) != 0) warn("sethostname");
    bring_up_loopback();
    setenv("PATH", kDefaultPath, 1);
    setenv("HOME", "/root", 1);

    std::string cgroup_root;
    if (is_mount_point(kCgroupMount)) {
        if (mkdir(kExecCgroupRoot, 0755) == 0 || errno == EEXIST) cgroup_root = kExecCgroupRoot;
        else warn(std::string("mkdir ") + kExecCgroupRoot);
    }
    return cgroup_root;
}

}  // namespace kiln::agent
