// The JSON bodies of agent Request and Result frames: one struct per operation, with the only
// code that turns them into JSON and back. Both sides include this file; parse_* validate hostile
// input and never throw.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace kiln::proto {

using nlohmann::json;

// Operation names ("op" in a Request).
namespace op {
inline constexpr const char* kPing = "ping";         // -> PingResult; always allowed
inline constexpr const char* kInit = "init";         // InitRequest -> {}; renews identity, enables exec/files
inline constexpr const char* kFreeze = "freeze";     // -> {}; syncs disks and disables exec/files until the next init
inline constexpr const char* kExec = "exec";         // ExecRequest -> Started, Stdout/Stderr..., ExecResult
inline constexpr const char* kRead = "read";         // PathRequest -> Data..., {"size"}
inline constexpr const char* kWrite = "write";       // WriteRequest, then Data..., Eof -> {"size"}
inline constexpr const char* kStat = "stat";         // PathRequest -> FileInfo
inline constexpr const char* kList = "list";         // PathRequest -> {"entries": [FileInfo...]}
inline constexpr const char* kMkdir = "mkdir";       // MkdirRequest -> {}
inline constexpr const char* kRemove = "remove";     // RemoveRequest -> {}
inline constexpr const char* kMove = "move";         // MoveRequest -> {}
inline constexpr const char* kWatch = "watch";       // WatchRequest -> Started, Data (WatchEvent)..., Detach -> {}
inline constexpr const char* kShutdown = "shutdown"; // -> {}; then sync, remount / read-only, reboot
// -> {"abandoned": N}; always allowed. Ends every active stream without a Result (exec trees are
// killed, partial writes discarded). The host sends it first on every new connection: virtio-serial
// shows the guest only whether a host is connected now, so a quick reconnect can go unnoticed.
inline constexpr const char* kReset = "reset";
// The process table (kept execs, docs/agent-protocol.md "Kept processes"):
inline constexpr const char* kProcs = "procs";    // -> {"processes": [ProcessInfo...]}
inline constexpr const char* kAttach = "attach";  // PidRequest -> Stdout/Stderr..., ExecResult
inline constexpr const char* kSignal = "signal";  // SignalRequest -> {}
inline constexpr const char* kInput = "input";    // InputRequest -> {}
}  // namespace op

// Error frames carry {"code": code_name(ErrorCode), "message"}: the agent's codes are the
// ErrorCode values in base/error_code.h (malformed_frame, invalid_argument, unknown_op, not_ready,
// not_found, permission_denied, exists, not_empty, io_error, stream_in_use, too_many_streams).

inline constexpr size_t kMaxPathLength = 4096;
inline constexpr size_t kMaxArgs = 4096;
inline constexpr uint64_t kDefaultOutputLimit = 1ull << 30;  // bytes of stdout+stderr per exec
inline constexpr uint64_t kUnlimitedOutput = UINT64_MAX;     // forward it all (the host caps it)
inline constexpr size_t kEntropyBytes = 64;
inline constexpr size_t kMaxStreams = 256;
inline constexpr size_t kMaxKeptProcesses = 256;  // kept execs alive at once
inline constexpr size_t kMaxTagLength = 256;
inline constexpr size_t kMaxUserNameLength = 256;

struct PingResult {
    uint32_t wire_version = 1;
    std::string agent_version;
    bool ready = false;  // init has been received since boot or the last freeze
    uint64_t uptime_ms = 0;
};

struct InitRequest {
    std::string sandbox_id;
    std::string hostname;
    int64_t time_unix_ns = 0;  // host wall clock at send time
    std::string entropy_hex;   // kEntropyBytes random bytes from the host, hex-encoded
    bool flush_arp = true;
};

struct ExecRequest {
    std::vector<std::string> argv;  // either argv ...
    std::string shell;              // ... or a string run by /bin/sh -c
    std::map<std::string, std::string> env;
    std::string cwd = "/";
    uint32_t uid = 0;
    uint32_t gid = 0;
    uint64_t timeout_ms = 0;  // 0: none; on expiry the whole process group gets SIGKILL
    bool stdin = false;       // the host will send Stdin frames and an Eof; otherwise /dev/null
    uint64_t output_limit = kDefaultOutputLimit;
    // Kept: in the agent's process table; it outlives its stream (Detach, abandon, reset, a
    // dropped connection) and can be attached to, signalled and fed by pid.
    bool keep = false;
    std::string tag;   // the caller's name for a kept process (E2B's tag), listed by procs
    // A user name resolved in the guest (/etc/passwd, /etc/group): replaces uid and gid, adds the
    // user's groups and HOME/USER/LOGNAME (the env still overrides them); cwd "" is its home.
    std::string user;
};

struct ExecResult {
    int exit_code = -1;  // valid when signal == 0
    int signal = 0;      // the signal that killed the process, or 0
    bool timed_out = false;
    bool output_truncated = false;
    uint64_t duration_ms = 0;
    // The stream ended by Detach while the kept process goes on: the other fields mean nothing.
    bool detached = false;

    // The shell convention: the exit code, or 128 + signal.
    int shell_status() const { return signal ? 128 + signal : exit_code; }
};

// One kept process still running, as procs lists it.
struct ProcessInfo {
    int pid = 0;
    std::vector<std::string> argv;  // as run: a shell command is {"/bin/sh", "-c", shell}
    std::map<std::string, std::string> env;  // the request's env only
    std::string cwd;
    std::string tag;
    std::string user;  // the request's user name, "" when it gave uid/gid
    bool stdin = false;  // started with stdin: input can feed it
};

struct PidRequest {  // attach
    int pid = 0;
};

struct SignalRequest {
    int pid = 0;
    int signal = 0;  // 1 <= signal < 65
};

struct InputRequest {
    int pid = 0;
    std::string data;  // raw bytes (base64 on the wire), at most kMaxInputBytes
    bool eof = false;  // close the process's stdin after data
};
inline constexpr size_t kMaxInputBytes = 128 * 1024;

struct PathRequest {
    std::string path;
};

struct WriteRequest {
    std::string path;
    uint32_t mode = 0644;
    bool parents = true;  // create missing parent folders (mode 0755)
    std::string user;     // a guest user name: the file (and folders created for it) is chowned to it
};

struct MkdirRequest {
    std::string path;
    uint32_t mode = 0755;
    bool parents = true;
    std::string user;  // as WriteRequest::user
};

struct RemoveRequest {
    std::string path;
    bool recursive = false;
};

struct FileInfo {
    std::string name;  // base name (list) or the path asked for (stat)
    std::string type;  // "file", "dir", "symlink", "other"
    uint64_t size = 0;
    uint32_t mode = 0;  // permission bits
    uint32_t uid = 0;
    uint32_t gid = 0;
    int64_t mtime_unix_ns = 0;
    std::string owner;           // the uid's name in the guest's /etc/passwd, else the number as text
    std::string group;           // the gid's name in /etc/group, else the number as text
    std::string symlink_target;  // a symlink's target as stored (readlink), else empty
    std::string path;            // list: the entry's full path; stat: empty
};

inline constexpr uint32_t kMaxListDepth = 64;

struct ListRequest {
    std::string path;
    uint32_t depth = 1;  // 1: the folder's entries; N: also N-1 levels below (never through symlinks)
};

struct MoveRequest {
    std::string from;
    std::string to;
};

struct WatchRequest {
    std::string path;
    bool recursive = false;
};

// One change under a watched folder, sent as a Data frame's JSON.
namespace watch_event {
inline constexpr const char* kCreate = "create";
inline constexpr const char* kWrite = "write";
inline constexpr const char* kRemove = "remove";
inline constexpr const char* kRename = "rename";
inline constexpr const char* kChmod = "chmod";
inline constexpr const char* kOverflow = "overflow";  // events were dropped; name is empty
}  // namespace watch_event

struct WatchEvent {
    std::string name;  // relative to the watched path ("sub/file" when recursive)
    std::string type;  // one of watch_event::k*
};

json to_json(const PingResult&);
json to_json(const InitRequest&);
json to_json(const ExecRequest&);
json to_json(const ExecResult&);
json to_json(const PathRequest&);
json to_json(const WriteRequest&);
json to_json(const MkdirRequest&);
json to_json(const RemoveRequest&);
json to_json(const FileInfo&);
json to_json(const ProcessInfo&);
json to_json(const PidRequest&);
json to_json(const SignalRequest&);
json to_json(const InputRequest&);
json to_json(const ListRequest&);
json to_json(const MoveRequest&);
json to_json(const WatchRequest&);
json to_json(const WatchEvent&);

// Parsers validate types, sizes and paths (absolute, no NUL, bounded length).
Result<json> parse_json_object(const std::string& payload);
Result<PingResult> parse_ping_result(const json&);
Result<InitRequest> parse_init_request(const json&);
Result<ExecRequest> parse_exec_request(const json&);
Result<ExecResult> parse_exec_result(const json&);
Result<PathRequest> parse_path_request(const json&);
Result<WriteRequest> parse_write_request(const json&);
Result<MkdirRequest> parse_mkdir_request(const json&);
Result<RemoveRequest> parse_remove_request(const json&);
Result<FileInfo> parse_file_info(const json&);
Result<ProcessInfo> parse_process_info(const json&);
Result<std::vector<ProcessInfo>> parse_procs_result(const json&);
Result<PidRequest> parse_pid_request(const json&);
Result<SignalRequest> parse_signal_request(const json&);
Result<InputRequest> parse_input_request(const json&);
Result<ListRequest> parse_list_request(const json&);
Result<MoveRequest> parse_move_request(const json&);
Result<WatchRequest> parse_watch_request(const json&);
Result<WatchEvent> parse_watch_event(const json&);

// A request body: the op plus the operation's fields.
json make_request(const char* op_name, json fields = json::object());

// An Error frame body.
json make_error_body(ErrorCode code, const std::string& message);
Error parse_error_body(const std::string& payload);

// Paths from the host are hostile: absolute, no NUL, no empty components beyond '/', bounded.
Status validate_path(const std::string& path);
// A user name from the host: bounded, none of ':' '/' newline NUL ("" is allowed: no user).
Status validate_user_name(const std::string& name);

}  // namespace kiln::proto
