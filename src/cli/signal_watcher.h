// SignalWatcher: turns SIGINT/SIGTERM/SIGHUP into calls on a thread of ours, via signalfd.
#pragma once

#include <functional>
#include <mutex>
#include <thread>

#include "base/unique_fd.h"

namespace kiln::cli {

// Construct it in main() before any other thread starts: it blocks the signals in the calling
// thread, and threads created afterwards inherit the mask (children get a clean mask from
// ChildProcess). The handler runs on the watcher's own thread.
class SignalWatcher {
public:
    SignalWatcher();
    ~SignalWatcher();  // restores the signal mask

    SignalWatcher(const SignalWatcher&) = delete;
    SignalWatcher& operator=(const SignalWatcher&) = delete;

    void set_handler(std::function<void(int)> handler);

private:
    void loop();

    UniqueFd m_signalfd;
    UniqueFd m_stop;  // eventfd
    std::thread m_thread;
    std::mutex m_mutex;
    std::function<void(int)> m_handler;  // guarded by m_mutex
};

}  // namespace kiln::cli
