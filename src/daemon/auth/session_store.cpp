// SessionStore over SQLite: table ui_sessions in kilnd.db (see session_store.h).
#include "daemon/auth/session_store.h"

#include <openssl/crypto.h>

#include "base/clock.h"
#include "base/random.h"
#include "base/sha256.h"

namespace kiln::daemon {
namespace {

constexpr const char* kSessionPrefix = "kses_";

Error no_session() { return make_error(ErrorCode::Unauthorized, "the session has ended or expired; sign in again"); }

// Only ids shaped like ours are looked up.
bool plausible_session_id(std::string_view id) {
    return id.size() == 5 + 43 && id.substr(0, 5) == kSessionPrefix;
}

}  // namespace

const Migrations& session_migrations() {
    // 10: dashboard sessions. The id itself is never stored (id_sha256); token_sha256 is the
    // token's row in tokens (its hash), so a revoked token ends its sessions at their next use.
    static const Migrations list = {
        {10, R"sql(
CREATE TABLE ui_sessions (
  id_sha256 TEXT PRIMARY KEY,
  token_sha256 TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL
);
CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at_ms);
)sql"},
    };
    return list;
}

std::string csrf_token_of(std::string_view session_id) {
    return sha256_hex("kiln-csrf:" + std::string(session_id));
}

Result<NewSession> SessionStore::create(std::string_view bearer_token, int64_t now_ms) {
    Caller caller = TRY(m_tokens.authenticate(bearer_token));
    (void)prune(now_ms);
    NewSession out;
    out.id = kSessionPrefix + base64url(TRY(random_bytes(32)));
    out.csrf = csrf_token_of(out.id);
    out.expires_at_ms = now_ms + m_lifetime_ms;
    out.caller = caller;
    auto db = m_db->session();
    auto st = TRY(db.prepare("INSERT INTO ui_sessions (id_sha256, token_sha256, created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?)"));
    st.bind(1, sha256_hex(out.id)).bind(2, sha256_hex(std::string(bearer_token))).bind(3, now_ms).bind(4, out.expires_at_ms);
    TRY(st.run());
    return out;
}

Result<SessionCaller> SessionStore::authenticate_session(std::string_view session_id) {
    if (!plausible_session_id(session_id)) return no_session();
    const std::string hash = sha256_hex(std::string(session_id));
    std::string stored_hash, token_hash;
    int64_t expires_at_ms = 0;
    {
        auto db = m_db->session();
        auto st = TRY(db.prepare("SELECT id_sha256, token_sha256, expires_at_ms FROM ui_sessions WHERE id_sha256 = ?"));
        st.bind(1, hash);
        if (!TRY(st.step())) return no_session();
        stored_hash = st.column_text(0);
        token_hash = st.column_text(1);
        expires_at_ms = st.column_int(2);
    }
    // As for tokens: compare the full hash again in constant time.
    if (stored_hash.size() != hash.size() || CRYPTO_memcmp(stored_hash.data(), hash.data(), hash.size()) != 0)
        return no_session();
    if (expires_at_ms <= now_unix_ms()) return no_session();
    auto caller = m_tokens.authenticate_hash(token_hash);
    if (!caller.ok()) {
        if (caller.error().code == ErrorCode::Unauthorized)
            return make_error(ErrorCode::Unauthorized, "the token this session was signed in with is revoked; sign in again");
        return caller.error();
    }
    return SessionCaller{*caller, csrf_token_of(session_id), expires_at_ms};
}

Status SessionStore::end(std::string_view session_id) {
    auto db = m_db->session();
    auto st = TRY(db.prepare("DELETE FROM ui_sessions WHERE id_sha256 = ?"));
    st.bind(1, sha256_hex(std::string(session_id)));
    return st.run();
}

Status SessionStore::prune(int64_t now_ms) {
    auto db = m_db->session();
    auto st = TRY(db.prepare("DELETE FROM ui_sessions WHERE expires_at_ms <= ?"));
    st.bind(1, now_ms);
    return st.run();
}

}  // namespace kiln::daemon
