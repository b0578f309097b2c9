// NetworkRemover: sandbox networks removed on a thread of their own, so that a DELETE (or a TTL
// expiry) returns once the VM is killed, without waiting for the kernel to delete the veth and the
// namespace (tens of milliseconds, more on a busy host).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "daemon/net/sandbox_network.h"

namespace kiln::daemon::net {

// Thread-safe. One worker, started on the first network handed over; failures are logged.
class NetworkRemover {
public:
    NetworkRemover() = default;
    ~NetworkRemover();  // wait_idle(), then the worker ends
    NetworkRemover(const NetworkRemover&) = delete;
    NetworkRemover& operator=(const NetworkRemover&) = delete;

    // Queues `network` for destroy(). Its VM must be gone already (QEMU holds the tap).
    void remove_later(std::unique_ptr<SandboxNetwork> network);
    // Returns once every network handed over so far is removed (kilnd's shutdown).
    void wait_idle();

private:
    void run();

    std::mutex m_mutex;
    std::condition_variable m_changed;
    std::deque<std::unique_ptr<SandboxNetwork>> m_queue;
    bool m_busy = false;  // the worker is removing one now
    bool m_stop = false;
    std::thread m_worker;
};

}  // namespace kiln::daemon::net
