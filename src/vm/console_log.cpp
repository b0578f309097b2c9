// ConsoleLog: serial console -> console.log, with kernel panic detection for error messages.
#include "vm/console_log.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "base/unix_socket.h"

namespace kiln::vm {
namespace {

constexpr auto kPanicTraceWait = Millis(500);

}  // namespace

Result<std::unique_ptr<ConsoleLog>> ConsoleLog::start(const std::string& socket_path, const std::string& log_path,
                                                      Millis connect_timeout, PanicCallback on_panic,
                                                      const std::function<std::optional<Error>()>& should_stop) {
    auto log = TRY(BoundedLog::create(log_path));
    UniqueFd fd = TRY(connect_unix_retry(socket_path, connect_timeout, should_stop));
    std::unique_ptr<ConsoleLog> console(new ConsoleLog(std::move(fd), std::move(log), std::move(on_panic)));
    console->m_reader = std::thread([c = console.get()] { c->reader_loop(); });
    return console;
}

ConsoleLog::~ConsoleLog() {
    m_stopping = true;
    ::shutdown(m_fd.get(), SHUT_RDWR);
    if (m_reader.joinable()) m_reader.join();
}

void ConsoleLog::report_panic() {
    PanicReport report;
    {
        std::lock_guard lock(m_mutex);
        if (m_panic || !m_scanner.panic_line()) return;
        report.line = *m_scanner.panic_line();
        report.context = m_scanner.last_lines();
        m_panic = report;
        m_cv.notify_all();
    }
    if (m_on_panic) m_on_panic(report);
}

void ConsoleLog::reader_loop() {
    char buf[16 * 1024];
    const auto never = Clock::time_point::max();
    auto panic_deadline = never;  // when to report a panic whose trace is still coming
    bool log_ok = true;
    while (!m_stopping) {
        int timeout = panic_deadline != never ? remaining_ms(panic_deadline) : -1;
        struct pollfd p{m_fd.get(), POLLIN, 0};
        int r = ::poll(&p, 1, timeout);
        if (r < 0 && errno != EINTR) break;
        if (r == 0) {  // the trace after the panic line is complete enough
            report_panic();
            panic_deadline = never;
            continue;
        }
        if (r < 0) continue;
        ssize_t n = ::read(m_fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            break;
        }
        if (n == 0) break;
        std::string_view data(buf, static_cast<size_t>(n));
        if (log_ok) log_ok = m_log->append(data).ok();  // a full disk must not stop panic detection
        bool report_now = false;
        {
            std::lock_guard lock(m_mutex);
            m_bytes += data.size();
            if (m_scanner.feed(data)) panic_deadline = Clock::now() + kPanicTraceWait;
            report_now = panic_deadline != never && !m_panic &&
                         m_scanner.lines_since_panic() >= ConsoleScanner::kContextLines / 2;
        }
        if (report_now) {
            report_panic();
            panic_deadline = never;
        }
    }
    report_panic();  // a panic seen just before EOF
    std::lock_guard lock(m_mutex);
    m_closed = true;
    m_cv.notify_all();
}

std::optional<PanicReport> ConsoleLog::panic() const {
    std::lock_guard lock(m_mutex);
    return m_panic;
}

std::vector<std::string> ConsoleLog::last_lines() const {
    std::lock_guard lock(m_mutex);
    return m_scanner.last_lines();
}

bool ConsoleLog::wait_closed(Millis timeout) {
    std::unique_lock lock(m_mutex);
    return m_cv.wait_for(lock, timeout, [this] { return m_closed; });
}

uint64_t ConsoleLog::bytes_seen() const {
    std::lock_guard lock(m_mutex);
    return m_bytes;
}

}  // namespace kiln::vm
