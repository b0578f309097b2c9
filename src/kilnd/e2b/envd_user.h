// The guest user an envd request acts as. The e2b SDK names it as the username of an HTTP Basic
// Authorization header ("user:" with no password; envd >= 0.4.0) and, on /files, as the
// `username` query parameter; without either, E2B's default user `user`.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace kiln::daemon::e2b {

inline constexpr const char* kDefaultEnvdUser = "user";

// The user of an Authorization header's value ("" when the request has none): the Basic
// username, or the default for no header, another scheme or an empty name; an error
// (unauthenticated) for Basic credentials that are not base64 or name no plausible user.
Result<std::string> user_from_authorization(std::string_view authorization);

// A user name as Linux tools accept it: [a-z_][a-z0-9_-]*[$]?, at most 32 characters.
bool plausible_user_name(std::string_view name);

}  // namespace kiln::daemon::e2b
