/* floor_init: PID 1 of latency_bench's floor guest. It echoes every byte that arrives on the
 * virtio-serial port named kiln.agent and does nothing else, so a restore of it measures what QEMU
 * and the guest kernel cost with no Kiln code in the guest. Built with `cc -static -O2`. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char kPortName[] = "kiln.agent";

static void pause_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The kernel mounts devtmpfs on /dev itself (CONFIG_DEVTMPFS_MOUNT); sysfs is ours. EBUSY means
 * it is mounted already, which is as good. */
static void mount_filesystems(void) {
    mkdir("/sys", 0555);
    mkdir("/dev", 0755);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
}

/* /sys/class/virtio-ports/vportNpM/name holds the port's name; its device node is /dev/vportNpM. */
static int find_port(char* dev_path, size_t size) {
    DIR* dir = opendir("/sys/class/virtio-ports");
    if (!dir) return -1;
    int found = -1;
    struct dirent* entry;
    while (found < 0 && (entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        char name_path[300], name[64] = {0};
        snprintf(name_path, sizeof name_path, "/sys/class/virtio-ports/%s/name", entry->d_name);
        int fd = open(name_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, name, sizeof name - 1);
        close(fd);
        if (n <= 0) continue;
        name[strcspn(name, "\n")] = '\0';
        if (strcmp(name, kPortName) == 0) {
            snprintf(dev_path, size, "/dev/%s", entry->d_name);
            found = 0;
        }
    }
    closedir(dir);
    return found;
}

/* Echoes bytes until the host end goes away: while no host is connected a read returns EOF (and
 * poll says POLLHUP), so the caller waits and reopens. */
static void echo_until_hangup(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    for (;;) {
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        unsigned char byte;
        ssize_t n = read(fd, &byte, 1);
        if (n == 1) {
            while (write(fd, &byte, 1) < 0 && errno == EINTR) {
            }
            continue;
        }
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        return;
    }
}

int main(void) {
    mount_filesystems();
    char dev_path[300];
    /* PID 1 never returns: the kernel would panic. */
    for (;;) {
        int fd = -1;
        if (find_port(dev_path, sizeof dev_path) == 0) fd = open(dev_path, O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            echo_until_hangup(fd);
            close(fd);
        }
        pause_ms(10);
    }
}
