// The guest's shutdown sequence, run by PID 1 after answering a shutdown request.
#include "agent/shutdown.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "agent/log.h"

namespace kiln::agent {
namespace {

// Reaps children until none is left or `ms` have passed.
void reap_for(int ms) {
    struct timespec start, now, pause {0, 10 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        while (waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        if (waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD) return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >= ms) return;
        nanosleep(&pause, nullptr);
    }
}

}  // namespace

void power_off() {
    log_line("shutting down");
    kill(-1, SIGTERM);
    reap_for(1000);
    kill(-1, SIGKILL);
    reap_for(1000);
    sync();
    if (mount(nullptr, "/", nullptr, MS_REMOUNT | MS_RDONLY, nullptr) != 0)
        log_line(std::string("remounting / read-only failed: ") + std::strerror(errno));
    reboot(RB_AUTOBOOT);
    log_line(std::string("reboot failed: ") + std::strerror(errno));
    for (;;) pause();
}

}  // namespace kiln::agent
