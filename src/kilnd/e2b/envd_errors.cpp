#include "kilnd/e2b/envd_errors.h"

#include "kilnd/http/route_context.h"

namespace kiln::daemon::e2b {

namespace {

ConnectCode connect_code(ErrorCode code) {
    switch (code) {
    case ErrorCode::Unauthorized: return ConnectCode::Unauthenticated;
    case ErrorCode::Forbidden:
    case ErrorCode::PermissionDenied: return ConnectCode::PermissionDenied;
    case ErrorCode::NotFound:
    case ErrorCode::TemplateNotFound: return ConnectCode::NotFound;
    case ErrorCode::InvalidArgument:
    case ErrorCode::MalformedBody:
    case ErrorCode::NotEmpty: return ConnectCode::InvalidArgument;
    case ErrorCode::Exists: return ConnectCode::AlreadyExists;
    // The SDK reads unavailable as "the sandbox is gone or timed out", which it is.
    case ErrorCode::SandboxNotRunning:
    case ErrorCode::VmGone:
    case ErrorCode::NotReady:
    case ErrorCode::Unavailable:
    case ErrorCode::StoreUnavailable: return ConnectCode::Unavailable;
    case ErrorCode::Conflict:
    case ErrorCode::StreamInUse: return ConnectCode::FailedPrecondition;
    case ErrorCode::QuotaExceeded:
    case ErrorCode::BodyTooLarge:
    case ErrorCode::TooLarge:
    case ErrorCode::ResourceExhausted:
    case ErrorCode::TooManyStreams:
    case ErrorCode::OutOfMemory: return ConnectCode::ResourceExhausted;
    case ErrorCode::Timeout: return ConnectCode::DeadlineExceeded;
    case ErrorCode::Cancelled:
    case ErrorCode::ClientGone: return ConnectCode::Canceled;
    case ErrorCode::Internal:
    case ErrorCode::IoError:
    case ErrorCode::StoreFailed:
    case ErrorCode::ProtocolError:
    case ErrorCode::QmpError:
    case ErrorCode::QemuError:
    case ErrorCode::QemuFailed:
    case ErrorCode::QemuMissing:
    case ErrorCode::KvmUnavailable:
    case ErrorCode::BootFailed:
    case ErrorCode::BootTimeout:
    case ErrorCode::KernelMissing:
    case ErrorCode::KernelInvalid:
    case ErrorCode::ImageMissing:
    case ErrorCode::ImageCorrupt:
    case ErrorCode::SnapshotFailed:
    case ErrorCode::SnapshotIncompatible:
    case ErrorCode::SnapshotDamaged:
    case ErrorCode::NotSnapshottable:
    case ErrorCode::RestoreFailed:
    case ErrorCode::ForkFailed:
    case ErrorCode::BakeFailed:
    case ErrorCode::NetworkSetupFailed:
    case ErrorCode::MalformedFrame:
    case ErrorCode::UnknownOp:
    case ErrorCode::InvalidPipeline:
    case ErrorCode::InvalidJunit:
    case ErrorCode::GitFailed:
    case ErrorCode::CliUsage:
    case ErrorCode::CliIo:
    case ErrorCode::CliProtocol:
    case ErrorCode::CliUnreachable:
    case ErrorCode::CliGit: return ConnectCode::Internal;
    }
    return ConnectCode::Internal;
}

}  // namespace

ConnectError to_connect_error(const Error& error, const std::string& request_id) {
    return ConnectError{connect_code(error.code), http::api_error(error, request_id).message};
}

int envd_http_status(const Error& error) {
    switch (connect_code(error.code)) {
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
