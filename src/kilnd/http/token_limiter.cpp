// Per-token request and stream caps; see token_limiter.h.
#include "kilnd/http/token_limiter.h"

namespace kiln::daemon::http {

bool TokenLimiter::try_acquire(int64_t token_id, Kind kind) {
    std::lock_guard lock(m_mutex);
    Counts& c = m_counts[token_id];
    int& n = kind == Kind::Request ? c.requests : c.streams;
    if (n >= cap(kind)) {
        if (c.requests == 0 && c.streams == 0) m_counts.erase(token_id);
        return false;
    }
    ++n;
    return true;
}

void TokenLimiter::release(int64_t token_id, Kind kind) {
    std::lock_guard lock(m_mutex);
    auto it = m_counts.find(token_id);
    if (it == m_counts.end()) return;
    int& n = kind == Kind::Request ? it->second.requests : it->second.streams;
    if (n > 0) --n;
    // Tokens with nothing in flight leave the map, so it holds only the tokens in use now.
    if (it->second.requests == 0 && it->second.streams == 0) m_counts.erase(it);
}

int TokenLimiter::held(int64_t token_id, Kind kind) const {
    std::lock_guard lock(m_mutex);
    auto it = m_counts.find(token_id);
    if (it == m_counts.end()) return 0;
    return kind == Kind::Request ? it->second.requests : it->second.streams;
}

}  // namespace kiln::daemon::http
