// QmpClient: the QEMU Machine Protocol over a unix socket; the only code in Kiln that speaks QMP.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/result.h"
#include "base/unique_fd.h"

namespace kiln::vm {

using nlohmann::json;

// One reader thread parses every line QEMU sends: command replies are routed to the caller by
// "id", events (SHUTDOWN, RESET, STOP, RESUME, MIGRATION, ...) are kept for wait_event().
// execute() and wait_event() may be called from any thread.
class QmpClient {
public:
    // Connects (retrying while QEMU starts, up to `timeout`), reads the greeting and negotiates
    // capabilities. `should_stop` ends the wait early with its error (e.g. QEMU exited).
    static Result<std::unique_ptr<QmpClient>> connect(const std::string& socket_path, Millis timeout,
                                                      const std::function<std::optional<Error>()>& should_stop = {});
    ~QmpClient();

    QmpClient(const QmpClient&) = delete;
    QmpClient& operator=(const QmpClient&) = delete;

    // Runs a command and returns its "return" value. A QMP error becomes Error{ErrorCode::QmpError, desc};
    // a closed connection Error{ErrorCode::VmGone}; no reply in time Error{ErrorCode::Timeout}.
    Result<json> execute(const std::string& command, const json& arguments = json::object(),
                         Millis timeout = Millis(10000));

    // The same, with `fd` passed to QEMU as SCM_RIGHTS ancillary data (for getfd / add-fd).
    Result<json> execute_with_fd(const std::string& command, const json& arguments, int fd,
                                 Millis timeout = Millis(10000));

    // Waits for the first stored event named `name` (including ones that arrived before the call),
    // removes it from the store and returns it ({"event","data","timestamp"}).
    Result<json> wait_event(const std::string& name, Millis timeout);
    // All stored events, oldest first (at most kMaxEvents).
    std::deque<json> events() const;
    void clear_events();

    bool connected() const;
    // QEMU's version as reported in the greeting, e.g. {"major":7,"minor":2,"micro":22}.
    json qemu_version() const { return m_greeting.value("QMP", json::object()).value("version", json::object()); }

    static constexpr size_t kMaxEvents = 1000;

private:
    QmpClient(UniqueFd fd, json greeting) : m_fd(std::move(fd)), m_greeting(std::move(greeting)) {}
    void reader_loop(std::string pending);
    void handle_line(const std::string& line);

    struct Pending {
        bool done = false;
        Result<json> result = json();
    };

    UniqueFd m_fd;
    const json m_greeting;
    std::thread m_reader;
    std::mutex m_send_mutex;  // one command line at a time on the socket

    mutable std::mutex m_mutex;  // guards everything below
    std::condition_variable m_cv;
    bool m_closed = false;
    uint64_t m_next_id = 1;
    std::map<uint64_t, std::shared_ptr<Pending>> m_pending;
    std::deque<json> m_events;
};

}  // namespace kiln::vm
