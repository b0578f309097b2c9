#include "kilnd/e2b/envd_errors.h"

#include <optional>

#include "daemon/api_error.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::e2b {

namespace {

// The codes the SDK tells apart beyond what their HTTP status says; the rest follow the status
// Kiln's API gives them (daemon/api_error.h), so that a new ErrorCode needs no entry here.
std::optional<ConnectCode> specific_code(ErrorCode code) {
    if (code == ErrorCode::Exists) return ConnectCode::AlreadyExists;  // MakeDir of an existing folder: false
    if (code == ErrorCode::PermissionDenied) return ConnectCode::PermissionDenied;
    // The SDK reads unavailable as "the sandbox is gone or timed out", which it is.
    if (code == ErrorCode::SandboxNotRunning || code == ErrorCode::VmGone || code == ErrorCode::NotReady)
        return ConnectCode::Unavailable;
    if (code == ErrorCode::Timeout) return ConnectCode::DeadlineExceeded;
    if (code == ErrorCode::Cancelled || code == ErrorCode::ClientGone) return ConnectCode::Canceled;
    if (code == ErrorCode::TooLarge || code == ErrorCode::ResourceExhausted || code == ErrorCode::TooManyStreams ||
        code == ErrorCode::OutOfMemory)
        return ConnectCode::ResourceExhausted;
    if (code == ErrorCode::NotEmpty) return ConnectCode::InvalidArgument;
    return std::nullopt;
}

ConnectCode connect_code(const Error& error) {
    if (auto specific = specific_code(error.code)) return *specific;
    switch (to_api_error(error).http_status) {
    case 400:
    case 422: return ConnectCode::InvalidArgument;
    case 401: return ConnectCode::Unauthenticated;
    case 403: return ConnectCode::PermissionDenied;
    case 404: return ConnectCode::NotFound;
    case 409: return ConnectCode::FailedPrecondition;
    case 413:
    case 429: return ConnectCode::ResourceExhausted;
    case 503: return ConnectCode::Unavailable;
    default: return ConnectCode::Internal;
    }
}

}  // namespace

ConnectError to_connect_error(const Error& error, const std::string& request_id) {
    return ConnectError{connect_code(error), http::api_error(error, request_id).message};
}

int envd_http_status(const Error& error) {
    switch (connect_code(error)) {
    case ConnectCode::InvalidArgument:
    case ConnectCode::FailedPrecondition:
    case ConnectCode::OutOfRange:
    case ConnectCode::AlreadyExists: return 400;
    case ConnectCode::Unauthenticated: return 401;
    case ConnectCode::PermissionDenied: return 403;
    case ConnectCode::NotFound: return 404;
    case ConnectCode::Unavailable: return 502;  // what E2B's proxy answers for a sandbox that is gone
    case ConnectCode::ResourceExhausted: return error.code == ErrorCode::QuotaExceeded ? 429 : 507;
    case ConnectCode::DeadlineExceeded: return 504;
    case ConnectCode::Unimplemented: return 501;
    case ConnectCode::Canceled:
    case ConnectCode::Unknown:
    case ConnectCode::Aborted:
    case ConnectCode::Internal:
    case ConnectCode::DataLoss: return 500;
    }
    return 500;
}

json envd_error_body(int status, const std::string& message) { return json{{"code", status}, {"message", message}}; }

}  // namespace kiln::daemon::e2b
