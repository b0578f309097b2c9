// envd's request messages (spec/envd/process/process.proto and filesystem/filesystem.proto in
// their proto3 JSON form: lowerCamelCase fields, bytes as base64, enums by name or number) parsed
// from hostile JSON into checked values. Pure functions: the fuzz target runs them alone.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "kilnd/e2b/connect_codec.h"
#include "proto/messages.h"

namespace kiln::daemon::e2b {

inline constexpr size_t kMaxProcessArgs = 4096;
inline constexpr size_t kMaxProcessEnvs = 1024;
// ListDir's depth bound is the agent's own (list's `depth`, docs/agent-protocol.md).
using proto::kMaxListDepth;

// What Start asked for.
struct ProcessConfig {
    std::string cmd;
    std::vector<std::string> args;
    std::map<std::string, std::string> envs;
    std::optional<std::string> cwd;
};

// A refused message: the Connect error to answer with (invalid_argument, or unimplemented for
// what Kiln does not do, such as a PTY).
template <typename T>
struct Parsed {
    std::optional<T> value;
    std::optional<ConnectError> error;
    bool ok() const { return value.has_value(); }
};

struct StartRequest {
    ProcessConfig process;
    std::optional<std::string> tag;
    bool stdin = true;  // proto: optional, absent means true (older SDKs)
};
Parsed<StartRequest> parse_start_request(const json& message);

// ProcessSelector: a pid or a tag.
struct ProcessSelector {
    std::optional<uint32_t> pid;
    std::optional<std::string> tag;
};
// `message["process"]`, the selector of Connect, SendInput, SendSignal, CloseStdin and Update.
Parsed<ProcessSelector> parse_selector(const json& message);

// SendInput: the stdin bytes (a pty input is refused as unimplemented).
Parsed<std::string> parse_send_input(const json& message);
// SendSignal: SIGTERM or SIGKILL, as their numbers.
Parsed<int> parse_signal(const json& message);

// A path field (Stat, MakeDir, Remove, ListDir, WatchDir: "path"; Move: "source",
// "destination"), relative paths resolved against `home`, then checked as Kiln checks guest paths.
Parsed<std::string> parse_path_field(const json& message, const char* field, const std::string& home);
// ListDir's depth: absent or 0 means 1; at most kMaxListDepth.
Parsed<uint32_t> parse_depth(const json& message);
// A bool field, false when absent.
Parsed<bool> parse_bool_field(const json& message, const char* field);
// A string field that must be there (a watcher's id).
Parsed<std::string> parse_string_field(const json& message, const char* field);

// The user's home, where relative paths and default working directories are.
std::string home_of(const std::string& user);
// `path` resolved against `home` when relative, then checked (absolute, no "..", no NUL).
Result<std::string> resolve_guest_path(const std::string& path, const std::string& home);

}  // namespace kiln::daemon::e2b
