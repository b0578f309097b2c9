// PgListener over libpq (see pg_listener.h).
#include "base/pg_listener.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "base/db_pg_connect.h"
#include "base/json_log.h"

namespace kiln {

Result<std::unique_ptr<PgListener>> PgListener::start(std::string url, std::string channel, std::function<void()> on_notify) {
    if (channel.empty() || channel.size() > 63 || std::isdigit(static_cast<unsigned char>(channel[0])) ||
        !std::all_of(channel.begin(), channel.end(), [](char c) { return std::islower(static_cast<unsigned char>(c)) ||
                                                                         std::isdigit(static_cast<unsigned char>(c)) || c == '_'; }))
        return make_error(ErrorCode::InvalidArgument, "a LISTEN channel is 1 to 63 lowercase letters, digits and '_'");
    std::unique_ptr<PgListener> listener(new PgListener(std::move(url), std::move(channel), std::move(on_notify)));
    if (::pipe2(listener->m_stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return make_error(ErrorCode::Internal, "pipe for the LISTEN thread failed");
    listener->m_thread = std::thread([l = listener.get()] { l->run(); });
    return listener;
}

PgListener::PgListener(std::string url, std::string channel, std::function<void()> on_notify)
    : m_url(std::move(url)), m_channel(std::move(channel)), m_on_notify(std::move(on_notify)) {}

PgListener::~PgListener() {
    {
        std::lock_guard lock(m_mutex);
        m_stopping = true;
    }
    m_cv.notify_all();
    if (m_stop_pipe[1] >= 0) (void)!::write(m_stop_pipe[1], "x", 1);
    if (m_thread.joinable()) m_thread.join();
    for (int fd : m_stop_pipe)
        if (fd >= 0) ::close(fd);
}

bool PgListener::pause(int ms) {
    std::unique_lock lock(m_mutex);
    return !m_cv.wait_for(lock, std::chrono::milliseconds(ms), [this] { return m_stopping; });
}

void PgListener::run() {
    int backoff_ms = 200;
    bool down_logged = false;
    for (;;) {
        {
            std::lock_guard lock(m_mutex);
            if (m_stopping) return;
        }
        PGconn* conn = db_detail::pg_connect(m_url);
        bool listening = false;
        if (PQstatus(conn) == CONNECTION_OK) {
            PGresult* r = PQexec(conn, ("LISTEN \"" + m_channel + "\"").c_str());
            listening = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
        }
        if (!listening) {
            if (!down_logged)
                log::warn("store: LISTEN connection failed; retrying (the queue polls meanwhile)",
                          {{"channel", m_channel}, {"error", db_detail::one_line(conn ? PQerrorMessage(conn) : "out of memory")}});
            down_logged = true;
            PQfinish(conn);
            if (!pause(backoff_ms)) return;
            backoff_ms = std::min(backoff_ms * 2, 5000);
            continue;
        }
        if (m_connects.fetch_add(1) > 0 || down_logged)
            log::info("store: LISTEN connection made again", {{"channel", m_channel}});
        down_logged = false;
        backoff_ms = 200;
        m_on_notify();  // whatever was sent while no connection listened
        for (;;) {
            pollfd fds[2] = {{PQsocket(conn), POLLIN, 0}, {m_stop_pipe[0], POLLIN, 0}};
            int n = ::poll(fds, 2, 5000);
            if (n < 0 && errno != EINTR) break;
            if (fds[1].revents) {
                PQfinish(conn);
                return;
            }
            // A closed connection reads as input: consuming it fails.
            if (!PQconsumeInput(conn) || PQstatus(conn) != CONNECTION_OK) {
                log::warn("store: LISTEN connection lost; reconnecting", {{"channel", m_channel},
                                                                         {"error", db_detail::one_line(PQerrorMessage(conn))}});
                down_logged = true;
                break;
            }
            bool any = false;
            while (PGnotify* note = PQnotifies(conn)) {
                any = true;
                PQfreemem(note);
            }
            if (any) m_on_notify();
        }
        PQfinish(conn);
        if (!pause(backoff_ms)) return;
    }
}

}  // namespace kiln
