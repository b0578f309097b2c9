// Unix socket connect/retry and send-with-deadline.
#include "base/unix_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "base/errno_error.h"

namespace kiln {

namespace {

// Connects `out`; returns 0 or the errno of the failure.
int try_connect(const std::string& path, UniqueFd& out) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return errno;
    struct sockaddr_un addr;
    std::memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    int r;
    do {
        r = ::connect(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr);
    } while (r != 0 && errno == EINTR);
    if (r != 0) return errno;
    out = std::move(fd);
    return 0;
}

Error too_long(const std::string& path) {
    return make_error(ErrorCode::InvalidArgument, "unix socket path is longer than 107 bytes: " + path);
}

}  // namespace

Result<UniqueFd> connect_unix(const std::string& path) {
    if (path.size() > kMaxUnixPathLength) return too_long(path);
    UniqueFd fd;
    if (int err = try_connect(path, fd)) return errno_error("connect " + path, err);
    return fd;
}

Result<UniqueFd> connect_unix_retry(const std::string& path, Millis timeout,
                                    const std::function<std::optional<Error>()>& should_stop) {
    if (path.size() > kMaxUnixPathLength) return too_long(path);
    auto deadline = Clock::now() + timeout;
    for (int attempt = 0;; ++attempt) {
        UniqueFd fd;
        int err = try_connect(path, fd);
        if (err == 0) return fd;
        if (err != ENOENT && err != ECONNREFUSED) return errno_error("connect " + path, err);
        if (should_stop)
            if (auto e = should_stop()) return *e;
        if (Clock::now() >= deadline)
            return make_error(ErrorCode::Timeout, "no server on " + path + " after " + std::to_string(timeout.count()) +
                                             " ms (" + std::strerror(err) + ")");
        // Start fast (a server is usually up within a few ms), then back off a little.
        std::this_thread::sleep_for(std::chrono::microseconds(attempt < 50 ? 1000 : 5000));
    }
}

Status set_nonblocking(int fd, bool on) {
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0) return errno_error("fcntl F_GETFL");
    flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (::fcntl(fd, F_SETFL, flags) != 0) return errno_error("fcntl F_SETFL");
    return ok_status();
}

Status send_all(int fd, std::string_view data, Clock::time_point deadline) {
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) n = ::write(fd, data.data() + done, data.size() - done);
        if (n >= 0) {
            done += static_cast<size_t>(n);
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return errno_error("send");
        int left = remaining_ms(deadline);
        if (left == 0) return make_error(ErrorCode::Timeout, "the peer is not reading");
        struct pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, std::min(left, 1000)) < 0 && errno != EINTR) return errno_error("poll");
    }
    return ok_status();
}

}  // namespace kiln
