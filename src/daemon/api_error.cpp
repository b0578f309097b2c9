// The ErrorCode -> API mapping. One switch with no default: -Werror=switch makes a code that is
// added to ErrorCode without a line here a build failure.
#include "daemon/api_error.h"

namespace kiln::daemon {
namespace {

// How the API shows a code: its status, its API code, and whether the message keeps the original
// code's name in front (for codes the API does not list, so the answer still says what failed).
struct Mapping {
    int status;
    ErrorCode api_code;
    bool name_in_message = false;
};

constexpr Mapping internal_with_name() { return {500, ErrorCode::Internal, true}; }

Mapping mapping_for(ErrorCode code) {
    switch (code) {
    // The API's own codes, as they are.
    case ErrorCode::Unauthorized: return {401, ErrorCode::Unauthorized};
    case ErrorCode::Forbidden: return {403, ErrorCode::Forbidden};
    case ErrorCode::NotFound: return {404, ErrorCode::NotFound};
    case ErrorCode::TemplateNotFound: return {404, ErrorCode::TemplateNotFound};
    case ErrorCode::InvalidArgument: return {422, ErrorCode::InvalidArgument};
    case ErrorCode::SandboxNotRunning: return {409, ErrorCode::SandboxNotRunning};
    case ErrorCode::Conflict: return {409, ErrorCode::Conflict};
    case ErrorCode::QuotaExceeded: return {429, ErrorCode::QuotaExceeded};
    case ErrorCode::Unavailable: return {503, ErrorCode::Unavailable};
    // The database is down or restarting: the caller may retry; the message says why.
    case ErrorCode::StoreUnavailable: return {503, ErrorCode::Unavailable};
    case ErrorCode::Internal: return {500, ErrorCode::Internal};

    // The request itself: its own statuses, shown as invalid_argument.
    case ErrorCode::MalformedBody: return {400, ErrorCode::InvalidArgument};
    case ErrorCode::BodyTooLarge: return {413, ErrorCode::InvalidArgument};

    // The guest's answers that are the caller's doing.
    case ErrorCode::VmGone:
    case ErrorCode::NotReady: return {409, ErrorCode::SandboxNotRunning};
    case ErrorCode::NotEmpty: return {409, ErrorCode::Conflict};
    case ErrorCode::Exists:
    case ErrorCode::PermissionDenied:
    case ErrorCode::TooLarge: return {422, ErrorCode::InvalidArgument};

    // Everything else is kilnd's or the host's failure: internal, naming the code.
    case ErrorCode::ClientGone:
    case ErrorCode::Timeout:
    case ErrorCode::Cancelled:
    case ErrorCode::IoError:
    case ErrorCode::OutOfMemory:
    case ErrorCode::ResourceExhausted:
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
    case ErrorCode::StreamInUse:
    case ErrorCode::TooManyStreams:
    case ErrorCode::InvalidPipeline:
    case ErrorCode::InvalidJunit:
    case ErrorCode::GitFailed:
    case ErrorCode::CliUsage:
    case ErrorCode::CliIo:
    case ErrorCode::CliProtocol:
    case ErrorCode::CliUnreachable:
    case ErrorCode::CliGit: return internal_with_name();
    }
    return internal_with_name();  // not an ErrorCode at all (a corrupt value)
}

}  // namespace

ApiError to_api_error(const Error& error) {
    Mapping m = mapping_for(error.code);
    return ApiError{m.status, m.api_code, m.name_in_message ? error.to_string() : error.message};
}

}  // namespace kiln::daemon
