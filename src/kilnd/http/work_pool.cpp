// The request pool; see work_pool.h.
#include "kilnd/http/work_pool.h"

namespace kiln::daemon::http {

WorkPool::WorkPool(int threads) {
    for (int i = 0; i < (threads > 0 ? threads : 1); ++i) m_threads.emplace_back([this] { run(); });
}

WorkPool::~WorkPool() {
    {
        std::lock_guard lock(m_mutex);
        m_stopping = true;
    }
    m_cv.notify_all();
    for (auto& t : m_threads) t.join();
}

void WorkPool::post(std::function<void()> task) {
    {
        std::lock_guard lock(m_mutex);
        m_tasks.push_back(std::move(task));
    }
    m_cv.notify_one();
}

void WorkPool::run() {
    for (;;) {
        std::function<void()> task;
        {
            std::unique_lock lock(m_mutex);
            m_cv.wait(lock, [this] { return m_stopping || !m_tasks.empty(); });
            if (m_tasks.empty()) return;
            task = std::move(m_tasks.front());
            m_tasks.pop_front();
        }
        task();
    }
}

}  // namespace kiln::daemon::http
