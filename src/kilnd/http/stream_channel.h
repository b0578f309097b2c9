// The queue between a streamed response's producer (its own thread: an exec, a file read, a tar)
// and the connection that writes it out asynchronously. The queue is bounded: a producer faster
// than its client waits in write(), which is the back-pressure the agent's reads then feel. No
// Boost here; the connection's side is take() and a wake-up callback.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

namespace kiln::daemon::http {

class StreamChannel {
public:
    explicit StreamChannel(size_t max_queued) : m_max_queued(max_queued) {}

    // Producer side. Blocks while the queue is full; false once the client is gone.
    bool write(const char* data, size_t size);
    // The producer has ended: `complete` when it finished its response (done()), false when it
    // failed part-way (the connection then ends it without its last chunk).
    void finish(bool complete);
    bool gone() const;

    // Connection side. `wake` is called (on the producer's thread) when something arrives while
    // the writer is idle; it should post the writer's next take() to the connection.
    void set_wake(std::function<void()> wake);
    struct Taken {
        std::string data;       // what to write now; empty: nothing queued
        bool finished = false;  // (with empty data) the producer ended
        bool complete = false;
    };
    // Everything queued (up to `max_bytes`). When nothing is queued and the producer has not
    // ended, the writer counts as idle until the next write() or finish() wakes it.
    Taken take(size_t max_bytes);
    // The client left (or the server stops): writes fail from now on; drops the wake callback.
    void mark_gone();

private:
    void wake_writer(std::unique_lock<std::mutex>& lock);

    const size_t m_max_queued;
    mutable std::mutex m_mutex;
    std::condition_variable m_space;
    std::deque<std::string> m_queue;
    size_t m_queued = 0;
    bool m_writer_busy = false;
    bool m_finished = false;
    bool m_complete = false;
    bool m_gone = false;
    std::function<void()> m_wake;
};

}  // namespace kiln::daemon::http
