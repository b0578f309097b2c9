// Kiln's errors in envd's terms: a Connect code for process.Process and filesystem.Filesystem,
// and the HTTP status of envd's REST routes (/files), whose bodies are {code, message} with the
// status as the code (spec/envd/envd.yaml's Error).
#pragma once

#include <string>

#include "base/result.h"
#include "kilnd/e2b/connect_codec.h"

namespace kiln::daemon::e2b {

// The Connect code the e2b SDK expects for `error` (not_found for a missing path, already_exists
// for MakeDir of an existing folder, unavailable for a sandbox that is gone...). The message is
// the one Kiln's API would show: an internal error's details go to kilnd's log under
// `request_id`, never to the client.
ConnectError to_connect_error(const Error& error, const std::string& request_id);

// envd's HTTP status for `error` on /files (400, 401, 404, 502, 507...).
int envd_http_status(const Error& error);
// {"code": status, "message": ...}, the body of an envd REST error.
json envd_error_body(int status, const std::string& message);

}  // namespace kiln::daemon::e2b
