// Authenticator: turns a bearer token into the Caller that owns what it creates.
#pragma once

#include <string_view>

#include "base/result.h"
#include "daemon/sandboxes/sandbox_service.h"

namespace kiln::daemon {

class Authenticator {
public:
    virtual ~Authenticator() = default;
    // The token as sent after "Bearer ". Unknown, revoked or malformed: Error{unauthorized}.
    // Tokens are stored hashed and compared in constant time; a token is never logged.
    virtual Result<Caller> authenticate(std::string_view bearer_token) = 0;
};

}  // namespace kiln::daemon
