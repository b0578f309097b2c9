// signalfd-based signal handling for the CLI.
#include "cli/signal_watcher.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>

namespace kiln::cli {
namespace {

sigset_t watched() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    return set;
}

}  // namespace

SignalWatcher::SignalWatcher() {
    sigset_t set = watched();
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
    m_signalfd.reset(::signalfd(-1, &set, SFD_CLOEXEC));
    m_stop.reset(::eventfd(0, EFD_CLOEXEC));
    m_thread = std::thread([this] { loop(); });
}

SignalWatcher::~SignalWatcher() {
    uint64_t one = 1;
    ssize_t ignored = ::write(m_stop.get(), &one, sizeof one);
    (void)ignored;
    if (m_thread.joinable()) m_thread.join();
    sigset_t set = watched();
    ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

void SignalWatcher::set_handler(std::function<void(int)> handler) {
    std::lock_guard lock(m_mutex);
    m_handler = std::move(handler);
}

void SignalWatcher::loop() {
    for (;;) {
        struct pollfd p[2] = {{m_signalfd.get(), POLLIN, 0}, {m_stop.get(), POLLIN, 0}};
        if (::poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (p[1].revents) return;
        struct signalfd_siginfo info;
        if (::read(m_signalfd.get(), &info, sizeof info) != sizeof info) continue;
        std::lock_guard lock(m_mutex);
        if (m_handler) m_handler(static_cast<int>(info.ssi_signo));
    }
}

}  // namespace kiln::cli
