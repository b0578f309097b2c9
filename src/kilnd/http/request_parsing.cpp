// Validation of kilnd's request bodies: every field checked for type and range, unknown fields
// refused, so a client learns exactly what was wrong and nothing odd reaches the VM layer.
#include "kilnd/http/request_parsing.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

namespace kiln::daemon::http {

using json = nlohmann::json;

namespace {

Error invalid(std::string message) { return make_error(ErrorCode::InvalidArgument, std::move(message)); }

Result<json> parse_object(std::string_view body, bool empty_is_object) {
    if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
        if (empty_is_object) return json::object();
        return make_error(ErrorCode::MalformedBody, "the request body is empty; a JSON object is expected");
    }
    json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return make_error(ErrorCode::MalformedBody, "the request body is not valid JSON");
    if (!doc.is_object()) return make_error(ErrorCode::MalformedBody, "the request body must be a JSON object");
    return doc;
}

Status only_fields(const json& doc, std::initializer_list<const char*> allowed) {
    std::set<std::string> names(allowed.begin(), allowed.end());
    for (const auto& [key, value] : doc.items())
        if (!names.count(key)) return invalid("unknown field '" + key + "'");
    return ok_status();
}

Result<int64_t> ttl_field(const json& value, const char* name) {
    if (!value.is_number_integer()) return invalid(std::string(name) + " must be an integer");
    if (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t(kMaxTtlSecondsAccepted))
        return invalid(std::string(name) + " is too large");
    int64_t v = value.get<int64_t>();
    if (v < 1) return invalid(std::string(name) + " must be at least 1");
    if (v > kMaxTtlSecondsAccepted) return invalid(std::string(name) + " is too large");
    return v;
}

Result<uint32_t> small_count(const json& value, const char* name, uint32_t max) {
    if (!value.is_number_integer()) return invalid(std::string(name) + " must be an integer");
    if (value.is_number_unsigned() ? value.get<uint64_t>() > max : (value.get<int64_t>() < 1 || value.get<int64_t>() > max))
        return invalid(std::string(name) + " must be between 1 and " + std::to_string(max));
    int64_t v = value.get<int64_t>();
    if (v < 1) return invalid(std::string(name) + " must be between 1 and " + std::to_string(max));
    return static_cast<uint32_t>(v);
}

bool valid_label_key(const std::string& key) {
    if (key.empty() || key.size() > kMaxMetadataKeyLength) return false;
    for (char c : key)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) return false;
    return true;
}

Result<Labels> metadata_field(const json& value) {
    if (!value.is_object()) return invalid("metadata must be an object of strings");
    if (value.size() > kMaxMetadataKeys) return invalid("metadata has more than 32 keys");
    Labels out;
    for (const auto& [key, v] : value.items()) {
        if (!valid_label_key(key)) return invalid("metadata key '" + key.substr(0, 80) + "' must match [A-Za-z0-9_.-]{1,64}");
        if (!v.is_string()) return invalid("metadata." + key + " must be a string");
        std::string s = v.get<std::string>();
        if (s.size() > kMaxMetadataValueLength) return invalid("metadata." + key + " is longer than 256 bytes");
        out[key] = std::move(s);
    }
    return out;
}

Result<Labels> env_field(const json& value, const char* name) {
    if (!value.is_object()) return invalid(std::string(name) + " must be an object of strings");
    if (value.size() > kMaxEnvEntries) return invalid(std::string(name) + " has more than 256 entries");
    Labels out;
    for (const auto& [key, v] : value.items()) {
        if (key.empty() || key.find('=') != std::string::npos || key.find('\0') != std::string::npos)
            return invalid(std::string(name) + " has an invalid variable name");
        if (!v.is_string()) return invalid(std::string(name) + "." + key + " must be a string");
        std::string s = v.get<std::string>();
        if (s.find('\0') != std::string::npos) return invalid(std::string(name) + "." + key + " contains a NUL byte");
        out[key] = std::move(s);
    }
    return out;
}

Result<std::string> string_field(const json& value, const char* name) {
    if (!value.is_string()) return invalid(std::string(name) + " must be a string");
    return value.get<std::string>();
}

}  // namespace

Result<CreateRequest> parse_create(std::string_view body) {
    json doc = TRY(parse_object(body, true));
    TRY(only_fields(doc, {"template", "ttl_seconds", "metadata", "vcpus", "memory_mib", "env", "network", "auto_pause"}));
    CreateRequest r;
    if (doc.contains("template")) {
        r.template_id = TRY(string_field(doc["template"], "template"));
        if (r.template_id.empty() || r.template_id.size() > 128) return invalid("template must be 1 to 128 characters");
    }
    if (doc.contains("ttl_seconds")) r.ttl_seconds = TRY(ttl_field(doc["ttl_seconds"], "ttl_seconds"));
    if (doc.contains("metadata")) r.metadata = TRY(metadata_field(doc["metadata"]));
    if (doc.contains("env")) r.env = TRY(env_field(doc["env"], "env"));
    if (doc.contains("vcpus")) r.vcpus = TRY(small_count(doc["vcpus"], "vcpus", 64));
    if (doc.contains("memory_mib")) r.memory_mib = TRY(small_count(doc["memory_mib"], "memory_mib", 262144));
    if (doc.contains("network")) {
        auto policy = net::parse_network_policy(doc["network"]);
        if (!policy.ok()) return invalid(policy.error().message);  // it names the field already
        r.network = *policy;
    }
    if (doc.contains("auto_pause")) {
        if (!doc["auto_pause"].is_boolean()) return invalid("auto_pause must be true or false");
        r.auto_pause = doc["auto_pause"].get<bool>();
    }
    return r;
}

Result<int64_t> parse_patch_ttl(std::string_view body) {
    json doc = TRY(parse_object(body, false));
    TRY(only_fields(doc, {"ttl_seconds"}));
    if (!doc.contains("ttl_seconds")) return invalid("ttl_seconds is required");
    return ttl_field(doc["ttl_seconds"], "ttl_seconds");
}

Result<ExecBody> parse_exec(std::string_view body) {
    json doc = TRY(parse_object(body, false));
    TRY(only_fields(doc, {"cmd", "argv", "env", "cwd", "timeout_seconds", "stdin"}));
    ExecBody out;
    proto::ExecRequest& req = out.request;
    bool has_cmd = doc.contains("cmd"), has_argv = doc.contains("argv");
    if (has_cmd == has_argv) return invalid("give exactly one of cmd and argv");
    if (has_cmd) {
        req.shell = TRY(string_field(doc["cmd"], "cmd"));
        if (req.shell.empty()) return invalid("cmd must not be empty");
        if (req.shell.find('\0') != std::string::npos) return invalid("cmd contains a NUL byte");
    } else {
        const json& argv = doc["argv"];
        if (!argv.is_array() || argv.empty()) return invalid("argv must be a non-empty array of strings");
        if (argv.size() > proto::kMaxArgs) return invalid("argv has too many elements");
        for (const auto& a : argv) {
            if (!a.is_string()) return invalid("argv must be a non-empty array of strings");
            std::string s = a.get<std::string>();
            if (s.find('\0') != std::string::npos) return invalid("argv contains a NUL byte");
            req.argv.push_back(std::move(s));
        }
        if (req.argv[0].empty()) return invalid("argv[0] must not be empty");
    }
    if (doc.contains("env")) req.env = TRY(env_field(doc["env"], "env"));
    if (doc.contains("cwd")) {
        std::string cwd = TRY(string_field(doc["cwd"], "cwd"));
        req.cwd = TRY(validate_guest_path(cwd));
    }
    double timeout = kDefaultExecTimeoutSeconds;
    if (doc.contains("timeout_seconds")) {
        const json& t = doc["timeout_seconds"];
        if (!t.is_number()) return invalid("timeout_seconds must be a number");
        double v = t.get<double>();
        if (!std::isfinite(v) || v < 0) return invalid("timeout_seconds must be 0 or more");
        if (v > 7 * 86400) return invalid("timeout_seconds must be at most 604800");
        if (v > 0) timeout = v;
    }
    req.timeout_ms = static_cast<uint64_t>(timeout * 1000.0);
    if (req.timeout_ms == 0) req.timeout_ms = 1;
    if (doc.contains("stdin")) {
        out.stdin_data = TRY(string_field(doc["stdin"], "stdin"));
        req.stdin = true;
    }
    return out;
}

Result<std::string> parse_snapshot_name(std::string_view body) {
    json doc = TRY(parse_object(body, true));
    TRY(only_fields(doc, {"name"}));
    if (!doc.contains("name")) return std::string();
    std::string name = TRY(string_field(doc["name"], "name"));
    bool ok = !name.empty() && name.size() <= 63 && std::isalnum(static_cast<unsigned char>(name[0]));
    for (char c : name)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) ok = false;
    if (!ok) return invalid("name must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$");
    return name;
}

Result<std::optional<int64_t>> parse_resume(std::string_view body) {
    json doc = TRY(parse_object(body, true));
    TRY(only_fields(doc, {"ttl_seconds"}));
    if (!doc.contains("ttl_seconds")) return std::optional<int64_t>();
    return std::optional<int64_t>(TRY(ttl_field(doc["ttl_seconds"], "ttl_seconds")));
}

Result<ForkRequest> parse_fork(std::string_view body) {
    json doc = TRY(parse_object(body, true));
    TRY(only_fields(doc, {"ttl_seconds", "metadata"}));
    ForkRequest r;
    if (doc.contains("ttl_seconds")) r.ttl_seconds = TRY(ttl_field(doc["ttl_seconds"], "ttl_seconds"));
    if (doc.contains("metadata")) r.metadata = TRY(metadata_field(doc["metadata"]));
    return r;
}

Result<std::string> validate_guest_path(std::string_view path) {
    if (path.empty()) return invalid("path is required");
    if (path.size() > proto::kMaxPathLength) return invalid("path is too long");
    if (path.find('\0') != std::string_view::npos) return invalid("path contains a NUL byte");
    if (path[0] != '/') return invalid("path must be absolute");
    size_t pos = 0;
    while (pos < path.size()) {
        size_t end = path.find('/', pos);
        if (end == std::string_view::npos) end = path.size();
        std::string_view part = path.substr(pos, end - pos);
        if (part == "..") return invalid("path must not contain '..'");
        if (part.size() > 255) return invalid("a path component is longer than 255 bytes");
        pos = end + 1;
    }
    return std::string(path);
}

Result<uint32_t> parse_mode(std::string_view text) {
    if (text.empty() || text.size() > 5) return invalid("mode must be octal, e.g. 0644");
    uint32_t mode = 0;
    for (char c : text) {
        if (c < '0' || c > '7') return invalid("mode must be octal, e.g. 0644");
        mode = mode * 8 + static_cast<uint32_t>(c - '0');
    }
    if (mode > 07777) return invalid("mode must be at most 07777");
    return mode;
}

Result<ListFilter> parse_list_filter(const std::multimap<std::string, std::string>& params) {
    ListFilter filter;
    for (const auto& [key, value] : params) {
        if (key == "state") {
            if (value == "all") {
                filter.all_states = true;
                continue;
            }
            auto state = parse_state(value);
            if (!state) return invalid("unknown state '" + value.substr(0, 40) + "'");
            filter.state = state;
        } else if (key == "owner") {
            if (value != "all" && value != "me") return invalid("owner must be me or all (all: admin only)");
            filter.every_owner = value == "all";
        } else if (key.rfind("metadata.", 0) == 0) {
            std::string label = key.substr(9);
            if (!valid_label_key(label)) return invalid("metadata filter key '" + label.substr(0, 80) + "' is not valid");
            filter.metadata[label] = value;
        } else if (key.rfind("metadata[", 0) == 0 && key.back() == ']') {
            std::string label = key.substr(9, key.size() - 10);
            if (!valid_label_key(label)) return invalid("metadata filter key '" + label.substr(0, 80) + "' is not valid");
            filter.metadata[label] = value;
        } else {
            return invalid("unknown query parameter '" + key.substr(0, 80) + "'");
        }
    }
    return filter;
}

}  // namespace kiln::daemon::http
