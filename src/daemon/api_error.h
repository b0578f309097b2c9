// What the REST API answers for an Error: the one place that turns any ErrorCode (the service's,
// the VM layer's, the agent's, CI's, the HTTP layer's own) into an HTTP status and one of the API's
// stable codes (api/openapi.yaml, Error.code). kilnd's routes and the GitHub webhook both use it.
#pragma once

#include <string>

#include "base/result.h"

namespace kiln::daemon {

struct ApiError {
    int http_status = 500;
    ErrorCode code = ErrorCode::Internal;  // one of the API's codes (ErrorCode::Unauthorized ... Unavailable)
    std::string message;
};

// The status and API code for `error`. A code the API does not know becomes `internal` (500) and
// keeps its own name in the message ("<code>: <message>"), so nothing is lost from the answer.
ApiError to_api_error(const Error& error);

}  // namespace kiln::daemon
