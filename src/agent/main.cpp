// kiln-agent: PID 1 of every Kiln guest. Sets up the system, then serves the host over virtio-serial forever.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <exception>
#include <thread>
#include <utility>

#include "agent/exec_child.h"
#include "agent/log.h"
#include "agent/pid1.h"
#include "agent/port.h"
#include "agent/server.h"
#include "agent/shutdown.h"

using namespace kiln::agent;

namespace {

void pause_ms(long ms) {
    struct timespec t {0, ms * 1000 * 1000};
    nanosleep(&t, nullptr);
}

// `work` on a thread of its own that takes no signal (SIGCHLD is the server's), or right here if
// no thread can be started.
std::thread start_background(void (*work)()) {
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    std::thread thread;
    try {
        thread = std::thread(work);
    } catch (const std::exception& e) {
        log_line(std::string("cannot start a setup thread (") + e.what() + "); doing it now");
        work();
    }
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return thread;
}

}  // namespace

int main() {
    const bool pid1 = getpid() == 1;
    ServerConfig config;
    config.pid1 = pid1;
    std::thread background_setup;
    if (pid1) {
        config.cgroup_root = setup_pid1();
        schedule_agent_as_batch();
        background_setup = start_background(enable_cgroup_favordynmods);
        config.before_first_exec = [&background_setup] {
            bring_up_loopback();
            if (background_setup.joinable()) background_setup.join();
        };
        // Once: a fork freezes its parent every time, and copying the shell again (~2 MB through
        // the emulated CPU) or walking PATH again would only lengthen the parent's pause.
        config.before_freeze = [preloaded = false]() mutable {
            if (std::exchange(preloaded, true)) return;
            preload_file("/bin/sh", 16 << 20);
            cache_path_lookups(kDefaultPath);
        };
    }

    std::unique_ptr<Server> server;
    for (;;) {
        auto created = Server::create(config);
        if (created.ok()) {
            server = std::move(created).value();
            break;
        }
        log_line("cannot start: " + created.error().message);
        if (!pid1) return 1;
        pause_ms(1000);  // PID 1 must not exit: the kernel would panic
    }
    log_line(std::string("ready for the host (") + (config.cgroup_root.empty() ? "no cgroup2" : "cgroup2") + ")");

    // While no host end is connected the port reads EOF and polls POLLHUP: every run() then ends
    // at once as Disconnected, and we reopen after a short pause until a host is there.
    for (;;) {
        kiln::UniqueFd port = wait_for_agent_port();
        RunEnd end = server->run(port.get());
        if (end == RunEnd::Shutdown) {
            if (background_setup.joinable()) background_setup.join();
            if (pid1) power_off();
            return 0;
        }
        port.reset();
        pause_ms(20);
    }
}
