// The request pool: a fixed number of threads (worker_threads) that run route handlers, which may
// block on the store, a VM or the agent. Nothing long-lived runs here: streams' producers get a
// thread of their own or run on the event loop (connection.h).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln::daemon::http {

class WorkPool {
public:
    explicit WorkPool(int threads);
    ~WorkPool();  // runs what is queued, then joins
    WorkPool(const WorkPool&) = delete;
    WorkPool& operator=(const WorkPool&) = delete;

    void post(std::function<void()> task);

private:
    void run();

    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<std::function<void()>> m_tasks;
    bool m_stopping = false;
    std::vector<std::thread> m_threads;
};

}  // namespace kiln::daemon::http
