// ConsoleLog: copies a VM's serial console to a bounded console.log and notices kernel panics.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "vm/bounded_log.h"
#include "vm/console_scanner.h"

namespace kiln::vm {

// A reader thread copies everything from the console socket to the log file. When a panic line
// appears it waits briefly for the trace that follows (until EOF, 30 lines, or 500 ms), then calls
// on_panic once, on the reader thread.
class ConsoleLog {
public:
    using PanicCallback = std::function<void(const PanicReport&)>;

    static Result<std::unique_ptr<ConsoleLog>> start(const std::string& socket_path, const std::string& log_path,
                                                     Millis connect_timeout, PanicCallback on_panic = {},
                                                     const std::function<std::optional<Error>()>& should_stop = {});
    ~ConsoleLog();

    std::optional<PanicReport> panic() const;
    std::vector<std::string> last_lines() const;
    // Waits until the console reached EOF (QEMU exited) and everything was written; false on timeout.
    bool wait_closed(Millis timeout);
    uint64_t bytes_seen() const;

private:
    ConsoleLog(UniqueFd fd, std::unique_ptr<BoundedLog> log, PanicCallback on_panic)
        : m_fd(std::move(fd)), m_log(std::move(log)), m_on_panic(std::move(on_panic)) {}
    void reader_loop();
    void report_panic();

    UniqueFd m_fd;
    std::unique_ptr<BoundedLog> m_log;  // reader thread only
    PanicCallback m_on_panic;
    std::thread m_reader;
    std::atomic<bool> m_stopping{false};

    mutable std::mutex m_mutex;  // guards everything below
    std::condition_variable m_cv;
    ConsoleScanner m_scanner;
    std::optional<PanicReport> m_panic;  // set once reported
    bool m_closed = false;
    uint64_t m_bytes = 0;
};

}  // namespace kiln::vm
