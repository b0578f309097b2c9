// NetworkRemover (see network_remover.h).
#include "daemon/net/network_remover.h"

#include "base/clock.h"
#include "base/json_log.h"

namespace kiln::daemon::net {

NetworkRemover::~NetworkRemover() {
    wait_idle();
    {
        std::lock_guard lock(m_mutex);
        m_stop = true;
        m_changed.notify_all();
    }
    if (m_worker.joinable()) m_worker.join();
}

void NetworkRemover::remove_later(std::unique_ptr<SandboxNetwork> network) {
    if (!network) return;
    std::lock_guard lock(m_mutex);
    m_queue.push_back(std::move(network));
    if (!m_worker.joinable()) m_worker = std::thread([this] { run(); });
    m_changed.notify_all();
}

void NetworkRemover::wait_idle() {
    std::unique_lock lock(m_mutex);
    m_changed.wait(lock, [&] { return m_queue.empty() && !m_busy; });
}

void NetworkRemover::run() {
    std::unique_lock lock(m_mutex);
    for (;;) {
        m_changed.wait(lock, [&] { return m_stop || !m_queue.empty(); });
        if (m_queue.empty()) return;  // stopping, nothing left
        std::unique_ptr<SandboxNetwork> network = std::move(m_queue.front());
        m_queue.pop_front();
        m_busy = true;
        lock.unlock();
        auto start = Clock::now();
        Status st = network->destroy();
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        if (st.ok()) log::info("sandbox network removed", {{"sandbox", network->sandbox_id()}, {"ms", ms}});
        else log::error("sandbox network removal failed", {{"sandbox", network->sandbox_id()}, {"error", st.error().to_string()}});
        network.reset();
        lock.lock();
        m_busy = false;
        m_changed.notify_all();
    }
}

}  // namespace kiln::daemon::net
