// Producer -> connection queue of a streamed response; see stream_channel.h.
#include "kilnd/http/stream_channel.h"

namespace kiln::daemon::http {

void StreamChannel::wake_writer(std::unique_lock<std::mutex>& lock) {
    if (m_writer_busy || !m_wake) return;
    m_writer_busy = true;
    auto wake = m_wake;
    lock.unlock();
    wake();
}

bool StreamChannel::write(const char* data, size_t size) {
    std::unique_lock lock(m_mutex);
    m_space.wait(lock, [&] { return m_gone || m_queued < m_max_queued; });
    if (m_gone) return false;
    if (size == 0) return true;
    m_queue.emplace_back(data, size);
    m_queued += size;
    wake_writer(lock);
    return true;
}

void StreamChannel::finish(bool complete) {
    std::unique_lock lock(m_mutex);
    m_finished = true;
    m_complete = complete;
    wake_writer(lock);
}

bool StreamChannel::gone() const {
    std::lock_guard lock(m_mutex);
    return m_gone;
}

void StreamChannel::set_wake(std::function<void()> wake) {
    std::lock_guard lock(m_mutex);
    m_wake = std::move(wake);
}

StreamChannel::Taken StreamChannel::take(size_t max_bytes) {
    std::lock_guard lock(m_mutex);
    Taken taken;
    while (!m_queue.empty() && taken.data.size() < max_bytes) {
        taken.data += m_queue.front();
        m_queued -= m_queue.front().size();
        m_queue.pop_front();
    }
    if (!taken.data.empty()) {
        m_space.notify_all();
        return taken;
    }
    if (m_finished) {
        taken.finished = true;
        taken.complete = m_complete;
        return taken;
    }
    m_writer_busy = false;
    return taken;
}

void StreamChannel::mark_gone() {
    std::function<void()> wake;
    {
        std::lock_guard lock(m_mutex);
        m_gone = true;
        m_queue.clear();
        m_queued = 0;
        wake = std::move(m_wake);  // destroyed outside the lock: it may hold the connection
        m_wake = nullptr;
    }
    m_space.notify_all();
}

}  // namespace kiln::daemon::http
