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
#include "vm/qemu_version.h"

namespace kiln::vm {

using nlohmann::json;

// query-status: whether the vCPUs run, and QEMU's run state.
struct QmpRunState {
    std::string status;  // "running", "paused", "inmigrate", "postmigrate", "finish-migrate", ...
    bool running = false;
};

// query-migrate: the current (or last) migration of this QEMU.
struct MigrationInfo {
    std::string status;      // "none", "setup", "active", "completed", "failed", "cancelled", ...
    std::string error_desc;  // why it failed, when QEMU says
    std::string reply;       // the whole reply as QEMU sent it, for error messages
};

// migrate-set-capabilities: the two Kiln sets before every migration, on either side.
struct MigrationCapabilities {
    bool ignore_shared = false;  // x-ignore-shared: RAM in a shared file is not sent (the file is the RAM)
    bool events = true;          // MIGRATION events, so the end of a migration is awaited, not polled
};

// migrate-set-parameters: the outgoing stream's limits.
// Only the parameters that are set are sent.
struct MigrationParameters {
    std::optional<int64_t> max_bandwidth;      // bytes per second
    std::optional<int64_t> downtime_limit_ms;  // the longest stop QEMU may plan for a running source
    std::optional<int64_t> announce_rounds;    // a destination's self-announcements after the load; 0: none
};

// The string field `key` of a QMP message, or "" when the message is not an object or the field
// is missing or not a string (QEMU's replies are read as hostile: a QEMU runs guest code).
std::string qmp_string(const json& object, const char* key);

// One reader thread parses every line QEMU sends: command replies are routed to the caller by
// "id", events (SHUTDOWN, RESET, STOP, RESUME, MIGRATION, ...) are kept for wait_event().
// Every call may be made from any thread.
//
// Each command is a typed call named after it. A QMP error reply becomes
// Error{QmpError, QEMU's "desc"}; a closed connection Error{VmGone}; no reply within `timeout`
// Error{Timeout}.
class QmpClient {
public:
    static constexpr Millis kCommandTimeout{10000};

    // Connects (retrying while QEMU starts, up to `timeout`), reads the greeting and negotiates
    // capabilities. `should_stop` ends the wait early with its error (e.g. QEMU exited).
    static Result<std::unique_ptr<QmpClient>> connect(const std::string& socket_path, Millis timeout,
                                                      const std::function<std::optional<Error>()>& should_stop = {});
    // The same over an already connected stream socket (the fuzz target uses a socketpair).
    static Result<std::unique_ptr<QmpClient>> adopt(UniqueFd fd, Millis timeout);
    ~QmpClient();

    QmpClient(const QmpClient&) = delete;
    QmpClient& operator=(const QmpClient&) = delete;

    // Run state.
    Status stop(Millis timeout = kCommandTimeout);  // the vCPUs stop
    Status cont(Millis timeout = kCommandTimeout);  // the vCPUs run
    Status quit(Millis timeout = kCommandTimeout);  // QEMU exits (it may close the socket before replying)
    Result<QmpRunState> query_status(Millis timeout = kCommandTimeout);
    Result<QemuVersion> query_version(Millis timeout = kCommandTimeout);

    // Migration.
    Status migrate_set_capabilities(const MigrationCapabilities& capabilities, Millis timeout = kCommandTimeout);
    Status migrate_set_parameters(const MigrationParameters& parameters, Millis timeout = kCommandTimeout);
    // Hands `fd` to QEMU (SCM_RIGHTS) under `name`, which migration URIs then name as "fd:<name>".
    // A second getfd under the same name replaces the first.
    Status getfd(const std::string& name, int fd, Millis timeout = kCommandTimeout);
    Status migrate(const std::string& uri, Millis timeout = kCommandTimeout);           // starts; ends with a MIGRATION event
    Status migrate_incoming(const std::string& uri, Millis timeout = kCommandTimeout);  // for a QEMU started with -incoming defer
    Status migrate_cancel(Millis timeout = kCommandTimeout);
    Result<MigrationInfo> query_migrate(Millis timeout = kCommandTimeout);

    // Waits for the first stored event named `name` (including ones that arrived before the call),
    // removes it from the store and returns it ({"event","data","timestamp"}).
    Result<json> wait_event(const std::string& name, Millis timeout);
    // All stored events, oldest first (at most kMaxEvents).
    std::deque<json> events() const;
    void clear_events();

    bool connected() const;
    // QEMU's version as reported in the greeting, e.g. {"major":7,"minor":2,"micro":22}.
    json qemu_version() const;

    static constexpr size_t kMaxEvents = 1000;

private:
    QmpClient(UniqueFd fd, json greeting) : m_fd(std::move(fd)), m_greeting(std::move(greeting)) {}
    // Reads the greeting, negotiates capabilities and starts the reader thread.
    static Result<std::unique_ptr<QmpClient>> negotiate(UniqueFd fd, Clock::time_point deadline);
    void reader_loop(std::string pending);
    void handle_line(const std::string& line);

    // The building block of every typed call: runs `command` and returns its "return" value, with
    // `fd` (if >= 0) passed to QEMU as SCM_RIGHTS ancillary data.
    Result<json> execute(const std::string& command, const json& arguments, Millis timeout, int fd = -1);
    // The same, for commands whose reply carries nothing Kiln reads.
    Status run(const std::string& command, const json& arguments, Millis timeout, int fd = -1);

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
