// Unix stream socket helpers: connect (with bounded retry while the server starts) and deadline-bound writes.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/result.h"
#include "base/unique_fd.h"

namespace kiln {

inline constexpr size_t kMaxUnixPathLength = 107;  // sizeof(sockaddr_un::sun_path) - 1

// Connects a blocking, close-on-exec unix stream socket to `path`.
Result<UniqueFd> connect_unix(const std::string& path);

// Retries connect_unix while the socket does not exist yet or refuses, until `timeout`.
// `should_stop` is polled between tries: returning an Error ends the wait with that error (e.g.
// "the server process exited").
Result<UniqueFd> connect_unix_retry(const std::string& path, Millis timeout,
                                    const std::function<std::optional<Error>()>& should_stop = {});

Status set_nonblocking(int fd, bool on = true);

// Writes all of `data` to a (possibly non-blocking) fd, waiting for POLLOUT up to `deadline`.
// Uses send(MSG_NOSIGNAL) on sockets so a closed peer is an error, not SIGPIPE.
Status send_all(int fd, std::string_view data, Clock::time_point deadline);

}  // namespace kiln
