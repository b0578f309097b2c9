// SessionStore: the dashboard's sign-in sessions (docs/dashboard.md). A person presents a token
// once; kilnd answers with a random session id in an HttpOnly cookie and keeps, in table
// ui_sessions of kilnd.db, only the id's SHA-256, the token's hash and an expiry. The cookie then
// authenticates API calls as that token, with its scopes, for as long as the token is not revoked
// and the session has not expired or been ended.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/db.h"
#include "base/db_migrations.h"
#include "daemon/auth/authenticator.h"
#include "daemon/auth/token_store.h"

namespace kiln::daemon {

// Migration 10 (versions are global across kilnd.db; see daemon/store/migrations.h).
const Migrations& session_migrations();

struct NewSession {
    std::string id;        // the cookie's value: shown once, stored only hashed
    std::string csrf;      // what state-changing requests must carry in X-Kiln-CSRF
    int64_t expires_at_ms = 0;
    Caller caller;
};

// Thread-safe (the db's Session serializes). Also the Authenticator for bearer tokens, so that the
// HTTP layer has one object that knows both ways in.
class SessionStore final : public Authenticator {
public:
    static constexpr int64_t kDefaultLifetimeMs = int64_t(12) * 3600 * 1000;

    SessionStore(std::shared_ptr<Db> db, TokenStore& tokens, int64_t lifetime_ms = kDefaultLifetimeMs)
        : m_db(std::move(db)), m_tokens(tokens), m_lifetime_ms(lifetime_ms) {}

    Result<Caller> authenticate(std::string_view bearer_token) override { return m_tokens.authenticate(bearer_token); }
    Result<SessionCaller> authenticate_session(std::string_view session_id) override;

    // Signs in: the token must be valid now. The session ends after the lifetime.
    Result<NewSession> create(std::string_view bearer_token, int64_t now_ms);
    // Ends the session (sign-out); ending one that is gone is not an error.
    Status end(std::string_view session_id);
    // Forgets expired sessions (called on each sign-in, so the table stays small).
    Status prune(int64_t now_ms);

private:
    std::shared_ptr<Db> m_db;
    TokenStore& m_tokens;
    int64_t m_lifetime_ms;
};

// The CSRF token of a session: derived from the session id (which only the cookie holds), so it is
// not stored and cannot be computed by someone who sees the table.
std::string csrf_token_of(std::string_view session_id);

}  // namespace kiln::daemon
