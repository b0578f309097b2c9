// The wire names of the error codes (see error_code.h).
#include "base/error_code.h"

#include <ostream>

namespace kiln {

const char* code_name(ErrorCode code) {
    // No default: -Werror=switch makes a new code without a name a build failure.
    switch (code) {
        case ErrorCode::Unauthorized: return "unauthorized";
        case ErrorCode::Forbidden: return "forbidden";
        case ErrorCode::InvalidArgument: return "invalid_argument";
        case ErrorCode::NotFound: return "not_found";
        case ErrorCode::TemplateNotFound: return "template_not_found";
        case ErrorCode::SandboxNotRunning: return "sandbox_not_running";
        case ErrorCode::QuotaExceeded: return "quota_exceeded";
        case ErrorCode::Conflict: return "conflict";
        case ErrorCode::Internal: return "internal";
        case ErrorCode::Unavailable: return "unavailable";
        case ErrorCode::MalformedBody: return "malformed_body";
        case ErrorCode::BodyTooLarge: return "body_too_large";
        case ErrorCode::ClientGone: return "client_gone";
        case ErrorCode::TooLarge: return "too_large";
        case ErrorCode::Timeout: return "timeout";
        case ErrorCode::Cancelled: return "cancelled";
        case ErrorCode::IoError: return "io_error";
        case ErrorCode::OutOfMemory: return "out_of_memory";
        case ErrorCode::ResourceExhausted: return "resource_exhausted";
        case ErrorCode::StoreFailed: return "store_failed";
        case ErrorCode::StoreUnavailable: return "store_unavailable";
        case ErrorCode::ProtocolError: return "protocol_error";
        case ErrorCode::VmGone: return "vm_gone";
        case ErrorCode::QmpError: return "qmp_error";
        case ErrorCode::QemuError: return "qemu_error";
        case ErrorCode::QemuFailed: return "qemu_failed";
        case ErrorCode::QemuMissing: return "qemu_missing";
        case ErrorCode::KvmUnavailable: return "kvm_unavailable";
        case ErrorCode::BootFailed: return "boot_failed";
        case ErrorCode::BootTimeout: return "boot_timeout";
        case ErrorCode::KernelMissing: return "kernel_missing";
        case ErrorCode::KernelInvalid: return "kernel_invalid";
        case ErrorCode::ImageMissing: return "image_missing";
        case ErrorCode::ImageCorrupt: return "image_corrupt";
        case ErrorCode::SnapshotFailed: return "snapshot_failed";
        case ErrorCode::SnapshotIncompatible: return "snapshot_incompatible";
        case ErrorCode::SnapshotDamaged: return "snapshot_damaged";
        case ErrorCode::NotSnapshottable: return "not_snapshottable";
        case ErrorCode::RestoreFailed: return "restore_failed";
        case ErrorCode::ForkFailed: return "fork_failed";
        case ErrorCode::BakeFailed: return "bake_failed";
        case ErrorCode::NetworkSetupFailed: return "network_setup_failed";
        case ErrorCode::MalformedFrame: return "malformed_frame";
        case ErrorCode::UnknownOp: return "unknown_op";
        case ErrorCode::NotReady: return "not_ready";
        case ErrorCode::PermissionDenied: return "permission_denied";
        case ErrorCode::Exists: return "exists";
        case ErrorCode::NotEmpty: return "not_empty";
        case ErrorCode::StreamInUse: return "stream_in_use";
        case ErrorCode::TooManyStreams: return "too_many_streams";
        case ErrorCode::InvalidPipeline: return "invalid_pipeline";
        case ErrorCode::InvalidJunit: return "invalid_junit";
        case ErrorCode::GitFailed: return "git_failed";
        case ErrorCode::CliUsage: return "cli_usage";
        case ErrorCode::CliIo: return "cli_io";
        case ErrorCode::CliProtocol: return "cli_protocol";
        case ErrorCode::CliUnreachable: return "cli_unreachable";
        case ErrorCode::CliGit: return "cli_git";
    }
    return nullptr;  // not an ErrorCode (parse_error_code() relies on this to find the end)
}

std::optional<ErrorCode> parse_error_code(std::string_view name) {
    for (int i = 0;; ++i) {
        const char* known = code_name(static_cast<ErrorCode>(i));
        if (known == nullptr) return std::nullopt;
        if (name == known) return static_cast<ErrorCode>(i);
    }
}

std::ostream& operator<<(std::ostream& out, ErrorCode code) {
    const char* name = code_name(code);
    return name ? out << name : out << "error_code(" << static_cast<int>(code) << ")";
}

bool is_cli_local(ErrorCode code) {
    return code == ErrorCode::CliUsage || code == ErrorCode::CliIo || code == ErrorCode::CliProtocol ||
           code == ErrorCode::CliUnreachable || code == ErrorCode::CliGit;
}

}  // namespace kiln
