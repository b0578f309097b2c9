// QMP: greeting, qmp_capabilities, typed commands routed by id, and an event store, over one reader thread.
#include "vm/qmp_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <type_traits>

#include "base/errno_error.h"
#include "base/unix_socket.h"

namespace kiln::vm {
namespace {

constexpr size_t kMaxLine = 16 * 1024 * 1024;

Error gone(const std::string& why) { return make_error(ErrorCode::VmGone, "QMP connection closed: " + why); }

// A field of a QMP message, or `fallback` when the message is not an object or the field is
// missing or of another type: json::value() would throw instead, on the reader thread (which
// ends kilnd) or in a caller that does not expect it.
template <typename T>
T field_or(const json& object, const char* key, T fallback) {
    if (!object.is_object()) return fallback;
    auto it = object.find(key);
    if (it == object.end()) return fallback;
    if constexpr (std::is_same_v<T, std::string>) {
        return it->is_string() ? it->get<std::string>() : fallback;
    } else if constexpr (std::is_same_v<T, bool>) {
        return it->is_boolean() ? it->get<bool>() : fallback;
    } else {
        return it->is_number_integer() ? it->get<T>() : fallback;
    }
}

// Reads one '\n'-terminated line synchronously (used before the reader thread starts).
Result<std::string> read_line(int fd, std::string& buffer, Clock::time_point deadline) {
    size_t scanned = 0;  // no '\n' before this: a long line is scanned once, not once per read
    for (;;) {
        size_t nl = buffer.find('\n', scanned);
        scanned = buffer.size();
        if (nl != std::string::npos) {
            std::string line = buffer.substr(0, nl);
            buffer.erase(0, nl + 1);
            return line;
        }
        if (buffer.size() > kMaxLine) return make_error(ErrorCode::ProtocolError, "QMP line too long");
        int left = remaining_ms(deadline);
        if (left == 0) return make_error(ErrorCode::Timeout, "QEMU did not answer on QMP in time");
        struct pollfd p{fd, POLLIN, 0};
        int r = ::poll(&p, 1, left);
        if (r < 0 && errno != EINTR) return errno_error("poll QMP");
        if (r <= 0) continue;
        char buf[4096];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return errno_error("read QMP");
        }
        if (n == 0) return gone("QEMU closed the socket during the handshake");
        buffer.append(buf, static_cast<size_t>(n));
    }
}

Result<json> read_message(int fd, std::string& buffer, Clock::time_point deadline) {
    for (;;) {
        std::string line = TRY(read_line(fd, buffer, deadline));
        if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
        json j = json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return make_error(ErrorCode::ProtocolError, "QMP sent invalid JSON");
        return j;
    }
}

}  // namespace

std::string qmp_string(const json& object, const char* key) { return field_or(object, key, std::string()); }

Result<std::unique_ptr<QmpClient>> QmpClient::connect(const std::string& socket_path, Millis timeout,
                                                      const std::function<std::optional<Error>()>& should_stop) {
    auto deadline = Clock::now() + timeout;
    UniqueFd fd = TRY(connect_unix_retry(socket_path, timeout, should_stop));
    return negotiate(std::move(fd), deadline);
}

Result<std::unique_ptr<QmpClient>> QmpClient::adopt(UniqueFd fd, Millis timeout) {
    return negotiate(std::move(fd), Clock::now() + timeout);
}

Result<std::unique_ptr<QmpClient>> QmpClient::negotiate(UniqueFd fd, Clock::time_point deadline) {
    TRY(set_nonblocking(fd.get()));
    std::string buffer;
    json greeting = TRY(read_message(fd.get(), buffer, deadline));
    if (!greeting.contains("QMP")) return make_error(ErrorCode::ProtocolError, "QMP greeting missing");
    TRY(send_all(fd.get(), "{\"execute\":\"qmp_capabilities\"}\n", deadline));
    for (;;) {
        json reply = TRY(read_message(fd.get(), buffer, deadline));
        if (reply.contains("event")) continue;
        if (reply.contains("error"))
            return make_error(ErrorCode::QmpError, "qmp_capabilities: " + field_or(reply["error"], "desc", std::string("?")));
        break;
    }
    std::unique_ptr<QmpClient> client(new QmpClient(std::move(fd), std::move(greeting)));
    client->m_reader = std::thread([c = client.get(), rest = std::move(buffer)]() mutable {
        c->reader_loop(std::move(rest));
    });
    return client;
}

QmpClient::~QmpClient() {
    ::shutdown(m_fd.get(), SHUT_RDWR);  // wakes the reader's poll
    if (m_reader.joinable()) m_reader.join();
}

void QmpClient::reader_loop(std::string buffer) {
    std::string why = "QEMU closed the socket";
    for (;;) {
        // Lines are taken from `start` and the buffer compacted once per read, not once per line.
        size_t start = 0, nl;
        while ((nl = buffer.find('\n', start)) != std::string::npos) {
            handle_line(buffer.substr(start, nl - start));
            start = nl + 1;
        }
        buffer.erase(0, start);
        if (buffer.size() > kMaxLine) {
            why = "QMP line too long";
            break;
        }
        struct pollfd p{m_fd.get(), POLLIN, 0};
        int r = ::poll(&p, 1, -1);
        if (r < 0) {
            if (errno == EINTR) continue;
            why = "poll failed";
            break;
        }
        char buf[16384];
        ssize_t n = ::read(m_fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            why = errno == ECONNRESET ? "QEMU closed the socket" : "read failed";
            break;
        }
        if (n == 0) break;
        buffer.append(buf, static_cast<size_t>(n));
    }
    std::lock_guard lock(m_mutex);
    m_closed = true;
    for (auto& [id, pending] : m_pending) {
        pending->done = true;
        pending->result = gone(why);
    }
    m_pending.clear();
    m_cv.notify_all();
}

void QmpClient::handle_line(const std::string& line) {
    if (line.find_first_not_of(" \r\t") == std::string::npos) return;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return;  // nothing sane to route it to
    std::lock_guard lock(m_mutex);
    if (j.contains("event")) {
        if (!j["event"].is_string()) return;  // wait_event() matches names: nothing to match
        if (j.contains("data") && !j["data"].is_object()) j["data"] = json::object();
        m_events.push_back(std::move(j));
        if (m_events.size() > kMaxEvents) m_events.pop_front();
        m_cv.notify_all();
        return;
    }
    auto id_it = j.find("id");
    if (id_it == j.end() || !id_it->is_number_unsigned()) return;
    auto it = m_pending.find(id_it->get<uint64_t>());
    if (it == m_pending.end()) return;  // the caller gave up (timeout)
    auto pending = it->second;
    m_pending.erase(it);
    pending->done = true;
    if (auto err = j.find("error"); err != j.end() && err->is_object()) {
        pending->result = make_error(ErrorCode::QmpError, field_or(*err, "desc", std::string("unknown QMP error")));
    } else {
        pending->result = j.value("return", json::object());
    }
    m_cv.notify_all();
}

namespace {

// Sends one command line with `fd` attached as SCM_RIGHTS (QMP's getfd/add-fd take fds this way).
Status send_line_with_fd(int sock, const std::string& line, int fd) {
    struct iovec iov {const_cast<char*>(line.data()), line.size()};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    ssize_t n;
    do n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno_error("send a file descriptor over QMP");
    if (static_cast<size_t>(n) < line.size())  // the fd went with the first byte; the rest is plain
        return send_all(sock, std::string_view(line).substr(static_cast<size_t>(n)), Clock::now() + Millis(5000));
    return ok_status();
}

}  // namespace

Result<json> QmpClient::execute(const std::string& command, const json& arguments, Millis timeout, int fd) {
    auto deadline = Clock::now() + timeout;
    auto pending = std::make_shared<Pending>();
    uint64_t id;
    {
        std::lock_guard lock(m_mutex);
        if (m_closed) return gone("executing " + command);
        id = m_next_id++;
        m_pending[id] = pending;
    }
    json request{{"execute", command}, {"id", id}};
    if (!arguments.is_null() && !arguments.empty()) request["arguments"] = arguments;
    Status sent = [&] {
        std::lock_guard lock(m_send_mutex);
        if (fd >= 0) return send_line_with_fd(m_fd.get(), request.dump() + "\n", fd);
        return send_all(m_fd.get(), request.dump() + "\n", deadline);
    }();
    std::unique_lock lock(m_mutex);
    if (!sent.ok() && !pending->done) {
        m_pending.erase(id);
        // A failed write usually means QEMU went away; the reader is about to see the EOF.
        if (sent.error().code != ErrorCode::Timeout)
            m_cv.wait_until(lock, std::min(deadline, Clock::now() + Millis(2000)), [this] { return m_closed; });
        return m_closed ? gone("executing " + command) : sent.error();
    }
    if (!m_cv.wait_until(lock, deadline, [&] { return pending->done; })) {
        m_pending.erase(id);
        return make_error(ErrorCode::Timeout, "QMP " + command + " got no reply within " + std::to_string(timeout.count()) + " ms");
    }
    return pending->result;
}

Status QmpClient::run(const std::string& command, const json& arguments, Millis timeout, int fd) {
    auto r = execute(command, arguments, timeout, fd);
    if (!r.ok()) return std::move(r).error();
    return ok_status();
}

Status QmpClient::stop(Millis timeout) { return run("stop", json::object(), timeout); }

Status QmpClient::cont(Millis timeout) { return run("cont", json::object(), timeout); }

Status QmpClient::quit(Millis timeout) { return run("quit", json::object(), timeout); }

Result<QmpRunState> QmpClient::query_status(Millis timeout) {
    json reply = TRY(execute("query-status", json::object(), timeout));
    return QmpRunState{qmp_string(reply, "status"), field_or(reply, "running", false)};
}

Result<QemuVersion> QmpClient::query_version(Millis timeout) {
    json reply = TRY(execute("query-version", json::object(), timeout));
    json qemu = reply.is_object() ? reply.value("qemu", json::object()) : json::object();
    return QemuVersion{field_or(qemu, "major", 0), field_or(qemu, "minor", 0), field_or(qemu, "micro", 0)};
}

Status QmpClient::migrate_set_capabilities(const MigrationCapabilities& capabilities, Millis timeout) {
    json list = json::array({json{{"capability", "x-ignore-shared"}, {"state", capabilities.ignore_shared}},
                             json{{"capability", "events"}, {"state", capabilities.events}}});
    return run("migrate-set-capabilities", json{{"capabilities", list}}, timeout);
}

Status QmpClient::migrate_set_parameters(const MigrationParameters& parameters, Millis timeout) {
    json args = json::object();
    if (parameters.max_bandwidth) args["max-bandwidth"] = *parameters.max_bandwidth;
    if (parameters.downtime_limit_ms) args["downtime-limit"] = *parameters.downtime_limit_ms;
    if (parameters.announce_rounds) args["announce-rounds"] = *parameters.announce_rounds;
    return run("migrate-set-parameters", args, timeout);
}

Status QmpClient::getfd(const std::string& name, int fd, Millis timeout) {
    return run("getfd", json{{"fdname", name}}, timeout, fd);
}

Status QmpClient::migrate(const std::string& uri, Millis timeout) { return run("migrate", json{{"uri", uri}}, timeout); }

Status QmpClient::migrate_incoming(const std::string& uri, Millis timeout) {
    return run("migrate-incoming", json{{"uri", uri}}, timeout);
}

Status QmpClient::migrate_cancel(Millis timeout) { return run("migrate_cancel", json::object(), timeout); }

Result<MigrationInfo> QmpClient::query_migrate(Millis timeout) {
    json reply = TRY(execute("query-migrate", json::object(), timeout));
    return MigrationInfo{qmp_string(reply, "status"), qmp_string(reply, "error-desc"),
                         reply.dump(-1, ' ', false, json::error_handler_t::replace)};
}

Result<json> QmpClient::wait_event(const std::string& name, Millis timeout) {
    auto deadline = Clock::now() + timeout;
    std::unique_lock lock(m_mutex);
    for (;;) {
        for (auto it = m_events.begin(); it != m_events.end(); ++it) {
            if (qmp_string(*it, "event") == name) {
                json event = std::move(*it);
                m_events.erase(it);
                return event;
            }
        }
        if (m_closed) return gone("waiting for event " + name);
        if (m_cv.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline)
            return make_error(ErrorCode::Timeout, "no QMP event " + name + " within " + std::to_string(timeout.count()) + " ms");
    }
}

std::deque<json> QmpClient::events() const {
    std::lock_guard lock(m_mutex);
    return m_events;
}

void QmpClient::clear_events() {
    std::lock_guard lock(m_mutex);
    m_events.clear();
}

json QmpClient::qemu_version() const {
    auto qmp = m_greeting.find("QMP");  // the greeting is an object (negotiate checked)
    if (qmp == m_greeting.end() || !qmp->is_object()) return json::object();
    auto version = qmp->find("version");
    return version != qmp->end() && version->is_object() ? *version : json::object();
}

bool QmpClient::connected() const {
    std::lock_guard lock(m_mutex);
    return !m_closed;
}

}  // namespace kiln::vm
