#include "kilnd/e2b/envd_messages.h"

#include <signal.h>

#include "base/base64.h"
#include "kilnd/http/request_parsing.h"

namespace kiln::daemon::e2b {

namespace {

template <typename T>
Parsed<T> invalid(std::string message) {
    Parsed<T> p;
    p.error = ConnectError{ConnectCode::InvalidArgument, std::move(message)};
    return p;
}

template <typename T>
Parsed<T> unimplemented(std::string message) {
    Parsed<T> p;
    p.error = ConnectError{ConnectCode::Unimplemented, std::move(message)};
    return p;
}

template <typename T>
Parsed<T> parsed(T value) {
    Parsed<T> p;
    p.value = std::move(value);
    return p;
}

bool has_nul(const std::string& s) { return s.find('\0') != std::string::npos; }

// proto3 JSON: a field set to null is the same as absent.
const json* field(const json& message, const char* name) {
    auto it = message.find(name);
    if (it == message.end() || it->is_null()) return nullptr;
    return &*it;
}

// A uint32 in proto3 JSON: a number or a decimal string.
std::optional<uint32_t> as_uint32(const json& value) {
    if (value.is_number_unsigned()) {
        auto v = value.get<uint64_t>();
        if (v <= UINT32_MAX) return static_cast<uint32_t>(v);
        return std::nullopt;
    }
    if (value.is_number_integer()) {
        auto v = value.get<int64_t>();
        if (v >= 0 && v <= UINT32_MAX) return static_cast<uint32_t>(v);
        return std::nullopt;
    }
    if (value.is_string()) {
        const auto& s = value.get_ref<const std::string&>();
        if (s.empty() || s.size() > 10) return std::nullopt;
        uint64_t v = 0;
        for (char c : s) {
            if (c < '0' || c > '9') return std::nullopt;
            v = v * 10 + static_cast<uint64_t>(c - '0');
        }
        if (v <= UINT32_MAX) return static_cast<uint32_t>(v);
    }
    return std::nullopt;
}

}  // namespace

Parsed<StartRequest> parse_start_request(const json& message) {
    if (field(message, "pty")) return unimplemented<StartRequest>("PTY processes are not supported by Kiln");
    const json* process = field(message, "process");
    if (!process || !process->is_object()) return invalid<StartRequest>("process: an object with cmd is required");
    StartRequest req;
    const json* cmd = field(*process, "cmd");
    if (!cmd || !cmd->is_string() || cmd->get_ref<const std::string&>().empty())
        return invalid<StartRequest>("process.cmd: a non-empty string is required");
    req.process.cmd = cmd->get<std::string>();
    if (has_nul(req.process.cmd)) return invalid<StartRequest>("process.cmd must not contain NUL");
    if (const json* args = field(*process, "args")) {
        if (!args->is_array()) return invalid<StartRequest>("process.args must be an array of strings");
        if (args->size() > kMaxProcessArgs)
            return invalid<StartRequest>("process.args has more than " + std::to_string(kMaxProcessArgs) + " entries");
        for (const auto& a : *args) {
            if (!a.is_string() || has_nul(a.get_ref<const std::string&>()))
                return invalid<StartRequest>("process.args must be strings without NUL");
            req.process.args.push_back(a.get<std::string>());
        }
    }
    if (const json* envs = field(*process, "envs")) {
        if (!envs->is_object()) return invalid<StartRequest>("process.envs must be an object of strings");
        if (envs->size() > kMaxProcessEnvs)
            return invalid<StartRequest>("process.envs has more than " + std::to_string(kMaxProcessEnvs) + " entries");
        for (const auto& [k, v] : envs->items()) {
            if (k.empty() || k.find('=') != std::string::npos || has_nul(k))
                return invalid<StartRequest>("process.envs: a name must be non-empty, without '=' or NUL");
            if (!v.is_string() || has_nul(v.get_ref<const std::string&>()))
                return invalid<StartRequest>("process.envs." + k.substr(0, 64) + " must be a string without NUL");
            req.process.envs[k] = v.get<std::string>();
        }
    }
    if (const json* cwd = field(*process, "cwd")) {
        if (!cwd->is_string() || has_nul(cwd->get_ref<const std::string&>()))
            return invalid<StartRequest>("process.cwd must be a string without NUL");
        if (!cwd->get_ref<const std::string&>().empty()) req.process.cwd = cwd->get<std::string>();
    }
    if (const json* tag = field(message, "tag")) {
        if (!tag->is_string() || has_nul(tag->get_ref<const std::string&>()) || tag->get_ref<const std::string&>().size() > 256)
            return invalid<StartRequest>("tag must be a string of at most 256 bytes");
        req.tag = tag->get<std::string>();
    }
    if (const json* in = field(message, "stdin")) {
        if (!in->is_boolean()) return invalid<StartRequest>("stdin must be a boolean");
        req.stdin = in->get<bool>();
    }
    return parsed(std::move(req));
}

Parsed<ProcessSelector> parse_selector(const json& message) {
    const json* process = field(message, "process");
    if (!process || !process->is_object()) return invalid<ProcessSelector>("process: a selector {pid} or {tag} is required");
    ProcessSelector sel;
    if (const json* pid = field(*process, "pid")) {
        auto v = as_uint32(*pid);
        if (!v) return invalid<ProcessSelector>("process.pid must be an unsigned 32-bit integer");
        sel.pid = *v;
    }
    if (const json* tag = field(*process, "tag")) {
        if (!tag->is_string()) return invalid<ProcessSelector>("process.tag must be a string");
        sel.tag = tag->get<std::string>();
    }
    if (sel.pid.has_value() == sel.tag.has_value())
        return invalid<ProcessSelector>("process: exactly one of pid and tag is required");
    return parsed(std::move(sel));
}

Parsed<std::string> parse_send_input(const json& message) {
    const json* input = field(message, "input");
    if (!input || !input->is_object()) return invalid<std::string>("input: an object with stdin is required");
    if (field(*input, "pty")) return unimplemented<std::string>("PTY input is not supported by Kiln");
    const json* in = field(*input, "stdin");
    if (!in) return parsed(std::string());
    if (!in->is_string()) return invalid<std::string>("input.stdin must be base64 bytes");
    // proto3 JSON accepts the URL-safe alphabet too; the SDK sends the standard one.
    std::string text = in->get<std::string>();
    for (char& c : text) {
        if (c == '-') c = '+';
        else if (c == '_') c = '/';
    }
    auto bytes = base64_decode(text);
    if (!bytes) return invalid<std::string>("input.stdin is not valid base64");
    return parsed(std::move(*bytes));
}

Parsed<int> parse_signal(const json& message) {
    const json* sig = field(message, "signal");
    if (!sig) return invalid<int>("signal is required (SIGNAL_SIGTERM or SIGNAL_SIGKILL)");
    if (sig->is_string()) {
        const auto& name = sig->get_ref<const std::string&>();
        if (name == "SIGNAL_SIGTERM") return parsed(int(SIGTERM));
        if (name == "SIGNAL_SIGKILL") return parsed(int(SIGKILL));
    } else if (auto n = as_uint32(*sig)) {
        if (*n == 15) return parsed(int(SIGTERM));
        if (*n == 9) return parsed(int(SIGKILL));
    }
    return invalid<int>("signal must be SIGNAL_SIGTERM or SIGNAL_SIGKILL");
}

std::string home_of(const std::string& user) { return user == "root" ? "/root" : "/home/" + user; }

Result<std::string> resolve_guest_path(const std::string& path, const std::string& home) {
    if (path.empty()) return make_error(ErrorCode::InvalidArgument, "the path is empty");
    std::string absolute = path;
    if (path == "~") absolute = home;
    else if (path.rfind("~/", 0) == 0) absolute = home + path.substr(1);
    else if (path[0] != '/') absolute = home + "/" + path;
    return http::validate_guest_path(absolute);
}

Parsed<std::string> parse_path_field(const json& message, const char* name, const std::string& home) {
    const json* value = field(message, name);
    if (!value || !value->is_string()) return invalid<std::string>(std::string(name) + ": a path string is required");
    auto path = resolve_guest_path(value->get<std::string>(), home);
    if (!path.ok()) return invalid<std::string>(std::string(name) + ": " + path.error().message);
    return parsed(std::move(*path));
}

Parsed<uint32_t> parse_depth(const json& message) {
    const json* value = field(message, "depth");
    if (!value) return parsed(uint32_t{1});
    auto depth = as_uint32(*value);
    if (!depth) return invalid<uint32_t>("depth must be an unsigned integer");
    if (*depth > kMaxListDepth) return invalid<uint32_t>("depth is at most " + std::to_string(kMaxListDepth));
    return parsed(*depth == 0 ? uint32_t{1} : *depth);
}

Parsed<bool> parse_bool_field(const json& message, const char* name) {
    const json* value = field(message, name);
    if (!value) return parsed(false);
    if (!value->is_boolean()) return invalid<bool>(std::string(name) + " must be a boolean");
    return parsed(value->get<bool>());
}

Parsed<std::string> parse_string_field(const json& message, const char* name) {
    const json* value = field(message, name);
    if (!value || !value->is_string() || value->get_ref<const std::string&>().empty())
        return invalid<std::string>(std::string(name) + ": a non-empty string is required");
    return parsed(value->get<std::string>());
}

}  // namespace kiln::daemon::e2b
