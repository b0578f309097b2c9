// JSON encoding and validating decoding of agent messages.
#include "proto/messages.h"

#include "base/base64.h"

namespace kiln::proto {
namespace {

Error invalid(const std::string& message) { return make_error(ErrorCode::InvalidArgument, message); }

// Field readers: absent fields keep the default; a present field of the wrong type is an error.
Status read_string(const json& j, const char* key, std::string& out, size_t max_len = 1 << 20) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return ok_status();
    if (!it->is_string()) return invalid(std::string("field '") + key + "' must be a string");
    const auto& s = it->get_ref<const std::string&>();
    if (s.size() > max_len) return invalid(std::string("field '") + key + "' is too long");
    out = s;
    return ok_status();
}

template <typename T>
Status read_uint(const json& j, const char* key, T& out, uint64_t max = UINT64_MAX) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return ok_status();
    if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
        return invalid(std::string("field '") + key + "' must be a non-negative integer");
    uint64_t v = it->get<uint64_t>();
    if (v > max) return invalid(std::string("field '") + key + "' is out of range");
    out = static_cast<T>(v);
    return ok_status();
}

template <typename T>
Status read_int(const json& j, const char* key, T& out) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return ok_status();
    if (!it->is_number_integer()) return invalid(std::string("field '") + key + "' must be an integer");
    out = static_cast<T>(it->get<int64_t>());
    return ok_status();
}

Status read_bool(const json& j, const char* key, bool& out) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return ok_status();
    if (!it->is_boolean()) return invalid(std::string("field '") + key + "' must be a boolean");
    out = it->get<bool>();
    return ok_status();
}

Status require_object(const json& j) {
    if (!j.is_object()) return invalid("message must be a JSON object");
    return ok_status();
}

Status read_path(const json& j, std::string& out) {
    TRY(read_string(j, "path", out, kMaxPathLength));
    return validate_path(out);
}

// An optional "user": absent or empty means the agent's own (root).
Status read_user(const json& j, std::string& out) {
    TRY(read_string(j, "user", out, kMaxUserNameLength));
    return out.empty() ? ok_status() : validate_user_name(out);
}

}  // namespace

Status validate_user_name(const std::string& name) {
    // Names as /etc/passwd can hold them: no ':' (the field separator), newline or NUL.
    if (name.size() > kMaxUserNameLength) return invalid("user name is too long");
    for (char c : name)
        if (c == ':' || c == '\n' || c == '\0' || c == '/') return invalid("user name '" + name + "' is not valid");
    return ok_status();
}

Status validate_path(const std::string& path) {
    if (path.empty()) return invalid("path is empty");
    if (path.size() > kMaxPathLength) return invalid("path is longer than 4096 bytes");
    if (path.find('\0') != std::string::npos) return invalid("path contains a NUL byte");
    if (path[0] != '/') return invalid("path must be absolute: '" + path + "'");
    return ok_status();
}

Result<json> parse_json_object(const std::string& payload) {
    json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return invalid("payload is not valid JSON");
    if (!j.is_object()) return invalid("payload must be a JSON object");
    return j;
}

json make_request(const char* op_name, json fields) {
    if (!fields.is_object()) fields = json::object();
    fields["op"] = op_name;
    return fields;
}

json make_error_body(ErrorCode code, const std::string& message) {
    return json{{"code", code_name(code)}, {"message", message}};
}

Error parse_error_body(const std::string& payload) {
    auto j = parse_json_object(payload);
    if (!j.ok()) return make_error(ErrorCode::ProtocolError, "agent sent an unreadable error frame");
    std::string code, message;
    (void)read_string(*j, "code", code, 256);
    (void)read_string(*j, "message", message, 64 * 1024);
    if (auto known = parse_error_code(code)) return make_error(*known, message);
    // A code this host does not know (a newer agent?): keep what it said in the message.
    return make_error(ErrorCode::ProtocolError,
                      "the agent answered with an unknown error code '" + code + "': " + message);
}

json to_json(const PingResult& r) {
    return json{{"wire_version", r.wire_version}, {"agent_version", r.agent_version}, {"ready", r.ready},
                {"uptime_ms", r.uptime_ms}};
}
Result<PingResult> parse_ping_result(const json& j) {
    TRY(require_object(j));
    PingResult r;
    TRY(read_uint(j, "wire_version", r.wire_version, UINT32_MAX));
    TRY(read_string(j, "agent_version", r.agent_version, 256));
    TRY(read_bool(j, "ready", r.ready));
    TRY(read_uint(j, "uptime_ms", r.uptime_ms));
    return r;
}

json to_json(const InitRequest& r) {
    return json{{"sandbox_id", r.sandbox_id}, {"hostname", r.hostname}, {"time_unix_ns", r.time_unix_ns},
                {"entropy_hex", r.entropy_hex}, {"flush_arp", r.flush_arp}};
}
Result<InitRequest> parse_init_request(const json& j) {
    TRY(require_object(j));
    InitRequest r;
    TRY(read_string(j, "sandbox_id", r.sandbox_id, 128));
    TRY(read_string(j, "hostname", r.hostname, 64));
    TRY(read_int(j, "time_unix_ns", r.time_unix_ns));
    TRY(read_string(j, "entropy_hex", r.entropy_hex, 2 * kEntropyBytes));
    TRY(read_bool(j, "flush_arp", r.flush_arp));
    for (char c : r.hostname)
        if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.'))
            return invalid("hostname may hold only letters, digits, '-' and '.'");
    if (r.entropy_hex.size() % 2 != 0) return invalid("entropy_hex must have an even length");
    for (char c : r.entropy_hex)
        if (!isxdigit(static_cast<unsigned char>(c))) return invalid("entropy_hex must be hex");
    return r;
}

json to_json(const ExecRequest& r) {
    json j{{"env", r.env},       {"cwd", r.cwd},         {"uid", r.uid},
           {"gid", r.gid},       {"timeout_ms", r.timeout_ms}, {"stdin", r.stdin},
           {"output_limit", r.output_limit}};
    // Only when set, so that a request without them reads as before to an older agent.
    if (r.keep) j["keep"] = true;
    if (!r.tag.empty()) j["tag"] = r.tag;
    if (!r.user.empty()) j["user"] = r.user;
    if (!r.argv.empty()) j["argv"] = r.argv;
    else j["shell"] = r.shell;
    return j;
}
Result<ExecRequest> parse_exec_request(const json& j) {
    TRY(require_object(j));
    ExecRequest r;
    if (auto it = j.find("argv"); it != j.end() && !it->is_null()) {
        if (!it->is_array()) return invalid("field 'argv' must be an array of strings");
        if (it->size() > kMaxArgs) return invalid("too many arguments");
        for (const auto& a : *it) {
            if (!a.is_string()) return invalid("field 'argv' must be an array of strings");
            const auto& s = a.get_ref<const std::string&>();
            if (s.find('\0') != std::string::npos) return invalid("an argument contains a NUL byte");
            r.argv.push_back(s);
        }
    }
    TRY(read_string(j, "shell", r.shell));
    if (r.argv.empty() == r.shell.empty()) return invalid("give exactly one of 'argv' (non-empty) or 'shell'");
    if (r.shell.find('\0') != std::string::npos) return invalid("shell command contains a NUL byte");
    if (auto it = j.find("env"); it != j.end() && !it->is_null()) {
        if (!it->is_object()) return invalid("field 'env' must be an object of strings");
        for (const auto& [k, v] : it->items()) {
            if (!v.is_string()) return invalid("env value for '" + k + "' must be a string");
            if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos)
                return invalid("env name '" + k + "' is not valid");
            if (v.get_ref<const std::string&>().find('\0') != std::string::npos)
                return invalid("env value for '" + k + "' contains a NUL byte");
            r.env[k] = v.get<std::string>();
        }
    }
    TRY(read_string(j, "user", r.user, kMaxUserNameLength));
    TRY(validate_user_name(r.user));
    TRY(read_string(j, "cwd", r.cwd, kMaxPathLength));
    if (!(r.cwd.empty() && !r.user.empty())) TRY(validate_path(r.cwd));  // "": the user's home
    TRY(read_bool(j, "keep", r.keep));
    TRY(read_string(j, "tag", r.tag, kMaxTagLength));
    TRY(read_uint(j, "uid", r.uid, UINT32_MAX - 1));
    TRY(read_uint(j, "gid", r.gid, UINT32_MAX - 1));
    TRY(read_uint(j, "timeout_ms", r.timeout_ms, 365ull * 24 * 3600 * 1000));
    TRY(read_bool(j, "stdin", r.stdin));
    TRY(read_uint(j, "output_limit", r.output_limit));
    return r;
}

json to_json(const ExecResult& r) {
    return json{{"exit_code", r.exit_code},     {"signal", r.signal},
                {"timed_out", r.timed_out},     {"output_truncated", r.output_truncated},
                {"duration_ms", r.duration_ms}, {"detached", r.detached}};
}
Result<ExecResult> parse_exec_result(const json& j) {
    TRY(require_object(j));
    ExecResult r;
    TRY(read_int(j, "exit_code", r.exit_code));
    TRY(read_int(j, "signal", r.signal));
    TRY(read_bool(j, "timed_out", r.timed_out));
    TRY(read_bool(j, "output_truncated", r.output_truncated));
    TRY(read_uint(j, "duration_ms", r.duration_ms));
    TRY(read_bool(j, "detached", r.detached));
    return r;
}

json to_json(const PathRequest& r) { return json{{"path", r.path}}; }
Result<PathRequest> parse_path_request(const json& j) {
    TRY(require_object(j));
    PathRequest r;
    TRY(read_path(j, r.path));
    return r;
}

json to_json(const WriteRequest& r) {
    json j{{"path", r.path}, {"mode", r.mode}, {"parents", r.parents}};
    if (!r.user.empty()) j["user"] = r.user;
    return j;
}
Result<WriteRequest> parse_write_request(const json& j) {
    TRY(require_object(j));
    WriteRequest r;
    TRY(read_path(j, r.path));
    TRY(read_uint(j, "mode", r.mode, 07777));
    TRY(read_bool(j, "parents", r.parents));
    TRY(read_user(j, r.user));
    return r;
}

json to_json(const MkdirRequest& r) {
    json j{{"path", r.path}, {"mode", r.mode}, {"parents", r.parents}};
    if (!r.user.empty()) j["user"] = r.user;
    return j;
}
Result<MkdirRequest> parse_mkdir_request(const json& j) {
    TRY(require_object(j));
    MkdirRequest r;
    TRY(read_path(j, r.path));
    TRY(read_uint(j, "mode", r.mode, 07777));
    TRY(read_bool(j, "parents", r.parents));
    TRY(read_user(j, r.user));
    return r;
}

json to_json(const RemoveRequest& r) { return json{{"path", r.path}, {"recursive", r.recursive}}; }
Result<RemoveRequest> parse_remove_request(const json& j) {
    TRY(require_object(j));
    RemoveRequest r;
    TRY(read_path(j, r.path));
    if (r.path == "/") return invalid("refusing to remove '/'");
    TRY(read_bool(j, "recursive", r.recursive));
    return r;
}

json to_json(const FileInfo& r) {
    json j{{"name", r.name}, {"type", r.type}, {"size", r.size}, {"mode", r.mode},
           {"uid", r.uid},   {"gid", r.gid},   {"mtime_unix_ns", r.mtime_unix_ns},
           {"owner", r.owner}, {"group", r.group}};
    if (!r.symlink_target.empty()) j["symlink_target"] = r.symlink_target;
    if (!r.path.empty()) j["path"] = r.path;
    return j;
}
Result<FileInfo> parse_file_info(const json& j) {
    TRY(require_object(j));
    FileInfo r;
    TRY(read_string(j, "name", r.name, kMaxPathLength));
    TRY(read_string(j, "type", r.type, 16));
    TRY(read_uint(j, "size", r.size));
    TRY(read_uint(j, "mode", r.mode, 07777));
    TRY(read_uint(j, "uid", r.uid, UINT32_MAX));
    TRY(read_uint(j, "gid", r.gid, UINT32_MAX));
    TRY(read_int(j, "mtime_unix_ns", r.mtime_unix_ns));
    TRY(read_string(j, "owner", r.owner, 256));
    TRY(read_string(j, "group", r.group, 256));
    TRY(read_string(j, "symlink_target", r.symlink_target, kMaxPathLength));
    TRY(read_string(j, "path", r.path, kMaxPathLength));
    return r;
}

// ---- the process table ----

json to_json(const ProcessInfo& r) {
    return json{{"pid", r.pid}, {"argv", r.argv}, {"env", r.env},   {"cwd", r.cwd},
                {"tag", r.tag}, {"user", r.user}, {"stdin", r.stdin}};
}
Result<ProcessInfo> parse_process_info(const json& j) {
    TRY(require_object(j));
    ProcessInfo r;
    TRY(read_int(j, "pid", r.pid));
    if (auto it = j.find("argv"); it != j.end() && !it->is_null()) {
        if (!it->is_array() || it->size() > kMaxArgs) return invalid("field 'argv' must be an array of strings");
        for (const auto& a : *it) {
            if (!a.is_string()) return invalid("field 'argv' must be an array of strings");
            r.argv.push_back(a.get<std::string>());
        }
    }
    if (auto it = j.find("env"); it != j.end() && !it->is_null()) {
        if (!it->is_object()) return invalid("field 'env' must be an object of strings");
        for (const auto& [k, v] : it->items()) {
            if (!v.is_string()) return invalid("env value for '" + k + "' must be a string");
            r.env[k] = v.get<std::string>();
        }
    }
    TRY(read_string(j, "cwd", r.cwd, kMaxPathLength));
    TRY(read_string(j, "tag", r.tag, kMaxTagLength));
    TRY(read_string(j, "user", r.user, kMaxUserNameLength));
    TRY(read_bool(j, "stdin", r.stdin));
    return r;
}
Result<std::vector<ProcessInfo>> parse_procs_result(const json& j) {
    TRY(require_object(j));
    auto it = j.find("processes");
    if (it == j.end() || !it->is_array()) return invalid("field 'processes' must be an array");
    std::vector<ProcessInfo> processes;
    processes.reserve(it->size());
    for (const auto& p : *it) processes.push_back(TRY(parse_process_info(p)));
    return processes;
}

namespace {
Status read_pid(const json& j, int& pid) {
    TRY(read_uint(j, "pid", pid, INT32_MAX));
    if (pid <= 0) return invalid("field 'pid' must be a positive integer");
    return ok_status();
}
}  // namespace

json to_json(const PidRequest& r) { return json{{"pid", r.pid}}; }
Result<PidRequest> parse_pid_request(const json& j) {
    TRY(require_object(j));
    PidRequest r;
    TRY(read_pid(j, r.pid));
    return r;
}

json to_json(const SignalRequest& r) { return json{{"pid", r.pid}, {"signal", r.signal}}; }
Result<SignalRequest> parse_signal_request(const json& j) {
    TRY(require_object(j));
    SignalRequest r;
    TRY(read_pid(j, r.pid));
    TRY(read_uint(j, "signal", r.signal, 64));
    if (r.signal < 1) return invalid("field 'signal' must be a signal number from 1 to 64");
    return r;
}

json to_json(const InputRequest& r) { return json{{"pid", r.pid}, {"data", base64_encode(r.data)}, {"eof", r.eof}}; }
Result<InputRequest> parse_input_request(const json& j) {
    TRY(require_object(j));
    InputRequest r;
    TRY(read_pid(j, r.pid));
    std::string encoded;
    TRY(read_string(j, "data", encoded, (kMaxInputBytes + 2) / 3 * 4));
    auto data = base64_decode(encoded);
    if (!data) return invalid("field 'data' must be base64 (standard alphabet)");
    r.data = std::move(*data);
    TRY(read_bool(j, "eof", r.eof));
    return r;
}
json to_json(const ListRequest& r) { return json{{"path", r.path}, {"depth", r.depth}}; }
Result<ListRequest> parse_list_request(const json& j) {
    TRY(require_object(j));
    ListRequest r;
    TRY(read_path(j, r.path));
    TRY(read_uint(j, "depth", r.depth, kMaxListDepth));
    if (r.depth == 0) return invalid("field 'depth' must be at least 1");
    return r;
}

json to_json(const MoveRequest& r) { return json{{"from", r.from}, {"to", r.to}}; }
Result<MoveRequest> parse_move_request(const json& j) {
    TRY(require_object(j));
    MoveRequest r;
    TRY(read_string(j, "from", r.from, kMaxPathLength));
    TRY(validate_path(r.from));
    TRY(read_string(j, "to", r.to, kMaxPathLength));
    TRY(validate_path(r.to));
    if (r.from == "/" || r.to == "/") return invalid("refusing to move '/'");
    return r;
}

json to_json(const WatchRequest& r) { return json{{"path", r.path}, {"recursive", r.recursive}}; }
Result<WatchRequest> parse_watch_request(const json& j) {
    TRY(require_object(j));
    WatchRequest r;
    TRY(read_path(j, r.path));
    TRY(read_bool(j, "recursive", r.recursive));
    return r;
}

json to_json(const WatchEvent& r) { return json{{"name", r.name}, {"type", r.type}}; }
Result<WatchEvent> parse_watch_event(const json& j) {
    TRY(require_object(j));
    WatchEvent r;
    TRY(read_string(j, "name", r.name, kMaxPathLength));
    TRY(read_string(j, "type", r.type, 16));
    for (const char* known : {watch_event::kCreate, watch_event::kWrite, watch_event::kRemove, watch_event::kRename,
                              watch_event::kChmod, watch_event::kOverflow})
        if (r.type == known) return r;
    return invalid("unknown watch event type '" + r.type + "'");
}


}  // namespace kiln::proto
