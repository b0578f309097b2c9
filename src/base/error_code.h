// ErrorCode: every machine-readable error Kiln makes, as one type. An Error carries one of these;
// code_name() gives the snake_case string that logs, the agent protocol and the REST API have
// always shown, so the wire stays as it was while a misspelt code no longer compiles.
//
// Adding a code: add it here and to code_name() (error_code.cpp), then to_api_error()
// (daemon/api_error.cpp) says what the API answers for it. Both are switches with no default,
// built with -Werror=switch, so a code left out of either fails the build.
#pragma once

#include <iosfwd>
#include <optional>
#include <string_view>

namespace kiln {

// The values are contiguous from 0 (no explicit numbers): parse_error_code() walks them.
enum class ErrorCode {
    // The REST API's own codes (api/openapi.yaml, Error.code).
    Unauthorized,
    Forbidden,  // a valid token without the scope the call needs (docs/tenants.md)
    InvalidArgument,
    NotFound,
    TemplateNotFound,
    SandboxNotRunning,
    QuotaExceeded,
    Conflict,
    Internal,
    Unavailable,

    // HTTP requests kilnd reads.
    MalformedBody,  // not JSON, or not an object
    BodyTooLarge,   // over the route's limit
    ClientGone,     // the client hung up mid-stream
    TooLarge,       // an upload or file over a limit

    // Host-side failures in general.
    Timeout,
    Cancelled,
    IoError,
    OutOfMemory,
    ResourceExhausted,
    StoreFailed,
    StoreUnavailable,  // the database cannot be reached now (PostgreSQL down or restarting): retry later

    // VMs: QEMU, QMP, the agent connection, boot.
    ProtocolError,  // a peer (agent, QMP, kilnd) sent something that does not parse
    VmGone,         // the VM died or its agent connection closed
    QmpError,       // QEMU answered a QMP command with an error
    QemuError,
    QemuFailed,
    QemuMissing,
    KvmUnavailable,
    BootFailed,
    BootTimeout,
    KernelMissing,
    KernelInvalid,
    ImageMissing,
    ImageCorrupt,

    // Snapshots, restores, forks, bakes.
    SnapshotFailed,
    SnapshotIncompatible,
    SnapshotDamaged,
    NotSnapshottable,
    RestoreFailed,
    ForkFailed,
    BakeFailed,

    NetworkSetupFailed,

    // Codes the guest agent puts in Error frames (docs/agent-protocol.md); invalid_argument,
    // not_found and io_error are shared with the host's.
    MalformedFrame,
    UnknownOp,
    NotReady,  // exec or files before the agent's init (e.g. right after a restore)
    PermissionDenied,
    Exists,
    NotEmpty,  // remove of a folder with entries, without recursive
    StreamInUse,
    TooManyStreams,

    // CI.
    InvalidPipeline,
    InvalidJunit,
    GitFailed,

    // Failures of the `kiln` CLI itself, not answered by kilnd: it prints only their message.
    CliUsage,
    CliIo,
    CliProtocol,
    CliUnreachable,
    CliGit,
};

// "invalid_argument" for ErrorCode::InvalidArgument, and so on: the string every log, agent frame
// and API body shows.
const char* code_name(ErrorCode code);

// The code whose code_name() is `name`, if any (what kilnd or the agent sent us).
std::optional<ErrorCode> parse_error_code(std::string_view name);

// Writes code_name(code) (so test failures and streams show the name, not a number).
std::ostream& operator<<(std::ostream& out, ErrorCode code);

// One of the Cli* codes: the CLI's own failure, whose code is not worth printing.
bool is_cli_local(ErrorCode code);

}  // namespace kiln
