// PID 1 setup: mount the kernel file systems, name the host, bring up lo, and make signals safe for init.
#include "agent/pid1.h"

#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
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
#include <string>

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

void mount_once(const char* source, const char* target, const char* type, unsigned long flags, const char* data,
                mode_t dir_mode = 0755) {
    if (mkdir(target, dir_mode) != 0 && errno != EEXIST) warn(std::string("mkdir ") + target);
    if (is_mount_point(target)) return;  // e.g. /dev, mounted by the kernel (DEVTMPFS_MOUNT)
    if (mount(source, target, type, flags, data) != 0) warn(std::string("mount ") + type + " on " + target);
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

}  // namespace

std::string setup_pid1() {
    // Signals: every disposition stays SIG_DFL. The kernel gives init no signal it has no handler
    // for (kill(2); its own SIGPIPE included: a write to a closed pipe is just EPIPE), so the
    // terminal and termination signals are ignored as they should be, and an exec child, which
    // shares our memory until it execs, has no disposition to reset. SIGCHLD arrives through the
    // server's signalfd.
    reboot(RB_DISABLE_CAD);  // Ctrl-Alt-Del becomes a SIGINT to us, which the kernel drops
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
    mount_once("cgroup2", kCgroupMount, "cgroup2", nosuid_nodev_noexec, nullptr);  // favordynmods: later
    const char* links[][2] = {{"/proc/self/fd", "/dev/fd"},
                              {"/proc/self/fd/0", "/dev/stdin"},
                              {"/proc/self/fd/1", "/dev/stdout"},
                              {"/proc/self/fd/2", "/dev/stderr"}};
    for (auto& link : links)
        if (symlink(link[0], link[1]) != 0 && errno != EEXIST) warn(std::string("symlink ") + link[1]);

    if (sethostname("kiln", 4) != 0) warn("sethostname");
    setenv("PATH", kDefaultPath, 1);
    setenv("HOME", "/root", 1);

    std::string cgroup_root;
    if (is_mount_point(kCgroupMount)) {
        if (mkdir(kExecCgroupRoot, 0755) == 0 || errno == EEXIST) cgroup_root = kExecCgroupRoot;
        else warn(std::string("mkdir ") + kExecCgroupRoot);
    }
    return cgroup_root;
}

void enable_cgroup_favordynmods() {
    // Older kernels refuse the option (EINVAL): cgroups then work as before, only slower to join.
    if (is_mount_point(kCgroupMount) &&
        mount(nullptr, kCgroupMount, nullptr, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, "favordynmods") != 0 &&
        errno != EINVAL)
        warn("remount cgroup2 with favordynmods");
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

void schedule_agent_as_batch() {
    struct sched_param param {};
    if (sched_setscheduler(0, SCHED_BATCH, &param) != 0) warn("switch to SCHED_BATCH");
}

void cache_path_lookups(const char* search_path) {
    for (const std::string& dir : split_search_path(search_path)) {
        if (dir.empty() || dir[0] != '/') continue;  // only absolute directories: the cwd varies
        DIR* listing = opendir(dir.c_str());
        if (!listing) continue;
        struct stat st;
        while (struct dirent* entry = readdir(listing))
            (void)fstatat(dirfd(listing), entry->d_name, &st, 0);  // follows symlinks: both inodes cached
        closedir(listing);
    }
}

void preload_file(const char* path, size_t max_bytes) {
    UniqueFd fd(open(path, O_RDONLY | O_CLOEXEC));
    if (!fd) return;
    static char buf[64 * 1024];
    size_t total = 0;
    ssize_t n;
    while (total < max_bytes && ((n = ::read(fd.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0) total += static_cast<size_t>(n);
}

}  // namespace kiln::agent
