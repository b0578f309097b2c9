// The dashboard's session cookie in the HTTP layer (docs/dashboard.md): reading it from a request,
// the checks a request authenticated by it must pass (CSRF token, Origin), and the Set-Cookie
// header. The sessions themselves are daemon/auth/session_store.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"
#include "daemon/auth/authenticator.h"
#include "kilnd/http/http_message.h"

namespace kiln::daemon::http {

inline constexpr const char* kSessionCookie = "kiln_session";
inline constexpr const char* kCsrfHeader = "X-Kiln-CSRF";

// The value of cookie `name` in the request's Cookie headers.
std::optional<std::string> cookie_value(const Request& req, const std::string& name);

// The request's Origin (or, without one, its Referer's origin) is kilnd's own: the scheme and
// Host the request came to, or `public_url`'s. A request that names neither (a non-browser
// client) passes; a browser that says Sec-Fetch-Site: cross-site does not.
bool from_own_origin(const Request& req, const std::string& public_url);

// The Caller of a request that has no Authorization header but the session cookie. A method that
// changes state (anything but GET and HEAD) must carry the session's CSRF token in X-Kiln-CSRF and
// come from kilnd's own origin: a form posted from another site can do neither.
Result<Caller> authenticate_cookie(Authenticator& auth, const Request& req, const std::string& public_url);

// Set-Cookie for a new session (HttpOnly, SameSite=Strict, Path=/, Max-Age; Secure when
// `secure`), or, with an empty id, the one that deletes it.
std::string session_cookie(const std::string& id, int64_t max_age_seconds, bool secure);

}  // namespace kiln::daemon::http
