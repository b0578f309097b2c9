// Authenticator: turns a bearer token into the Caller that owns what it creates.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "daemon/sandboxes/sandbox_service.h"

namespace kiln::daemon {

// A caller known by a dashboard session cookie (session_store.h), with the CSRF token that its
// state-changing requests must carry.
struct SessionCaller {
    Caller caller;
    std::string csrf;
    int64_t expires_at_ms = 0;
};

class Authenticator {
public:
    virtual ~Authenticator() = default;
    // The token as sent after "Bearer ". Unknown, revoked or malformed: Error{unauthorized}.
    // Tokens are stored hashed and compared in constant time; a token is never logged.
    virtual Result<Caller> authenticate(std::string_view bearer_token) = 0;
    // The value of a dashboard session cookie; this default knows no sessions.
    virtual Result<SessionCaller> authenticate_session(std::string_view /*session_id*/) {
        return make_error(ErrorCode::Unauthorized, "no such session");
    }
};

}  // namespace kiln::daemon
