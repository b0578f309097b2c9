// Per-token caps on what one bearer token may hold at once: requests in flight (from the headers
// to the last byte of the answer) and long-lived streams (log follow, exec streams, downloads).
// A stream counts as a request while its handler runs and as a stream once it streams, so a token
// at its stream cap can still make ordinary requests (docs/http.md).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>

namespace kiln::daemon::http {

class TokenLimiter {
public:
    enum class Kind { Request, Stream };

    TokenLimiter(int max_requests, int max_streams) : m_max_requests(max_requests), m_max_streams(max_streams) {}

    // True (and counted) when the token is under its cap for `kind`.
    bool try_acquire(int64_t token_id, Kind kind);
    void release(int64_t token_id, Kind kind);
    int cap(Kind kind) const { return kind == Kind::Request ? m_max_requests : m_max_streams; }
    int held(int64_t token_id, Kind kind) const;

private:
    struct Counts {
        int requests = 0;
        int streams = 0;
    };
    const int m_max_requests;
    const int m_max_streams;
    mutable std::mutex m_mutex;
    std::map<int64_t, Counts> m_counts;
};

}  // namespace kiln::daemon::http
