// Errors as E2B's API and envd show them: a JSON body {code: <the HTTP status>, message}, which
// E2B's SDKs read into their own exceptions (401 AuthenticationError, 404 NotFoundError, 429
// RateLimitError ...).
#pragma once

#include <string>

#include "base/result.h"
#include "kilnd/http/http_message.h"

namespace kiln::daemon::e2b {

// The HTTP status E2B's clients expect for a Kiln error: Kiln's own status (daemon/api_error.h),
// except that a refused request is 400 rather than 422, and a sandbox that is not running seen
// through envd is 502, as E2B's proxy answers for a sandbox that is gone.
int e2b_status(const Error& error);

// The error in E2B's shape. A 500's details go to kilnd's log under the request id; the client
// gets only "internal error (request <id>)", as on Kiln's own API.
void send_e2b_error(http::Response& res, const Error& error);
// A status of E2B's own with its message (501 for a call Kiln does not support).
void send_e2b_status(http::Response& res, int status, const std::string& message);

}  // namespace kiln::daemon::e2b
