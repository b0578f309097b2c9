// PgListener: LISTEN on one PostgreSQL channel over a connection of its own, calling back on every
// notification. The CI queue's workers on several hosts wake by it when any host queues a job
// (NOTIFY in the transaction that queued it), instead of each polling the store.
//
// The connection is dedicated (a LISTEN holds it: it cannot serve the stores' sessions) and is
// made again after a loss (PostgreSQL restarted, the network between): every (re)connect also
// calls back once, since a notification sent while it was away is lost; the caller's own poll is
// the fallback for whatever falls between.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/result.h"

namespace kiln {

class PgListener {
public:
    // `url`: a libpq connection string or postgresql:// URL; `channel`: lowercase letters, digits
    // and '_' (it is an identifier). `on_notify` runs on the listener's thread; keep it short.
    static Result<std::unique_ptr<PgListener>> start(std::string url, std::string channel, std::function<void()> on_notify);
    ~PgListener();  // stops the thread and closes the connection
    PgListener(const PgListener&) = delete;
    PgListener& operator=(const PgListener&) = delete;

    // Connections made so far (1 after the first; each reconnect adds one).
    int connects() const { return m_connects.load(); }

private:
    PgListener(std::string url, std::string channel, std::function<void()> on_notify);
    void run();
    // Waits up to `ms`, or until stop; false when stopping.
    bool pause(int ms);

    const std::string m_url;
    const std::string m_channel;
    const std::function<void()> m_on_notify;
    std::atomic<int> m_connects{0};
    std::mutex m_mutex;
    std::condition_variable m_cv;
    bool m_stopping = false;
    int m_stop_pipe[2] = {-1, -1};  // written on stop: wakes the poll on the connection's socket
    std::thread m_thread;
};

}  // namespace kiln
