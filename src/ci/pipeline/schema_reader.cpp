// SchemaReader: the typed readers of `.kiln.yml` fields; each refusal names the field's path and place.
#include "ci/pipeline/schema_reader.h"

#include <charconv>

#include "ci/pipeline/pipeline.h"

namespace kiln::ci {

using Kind = YamlNode::Kind;

bool is_env_name(const std::string& s) {
    if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    });
}

bool has_control_char(const std::string& s, bool allow_newlines) {
    return std::any_of(s.begin(), s.end(), [&](char c) {
        auto u = static_cast<unsigned char>(c);
        if (allow_newlines && (c == '\n' || c == '\t' || c == '\r')) return false;
        return u < 0x20 || u == 0x7f;
    });
}

std::string relative_path_problem(const std::string& path) {
    if (path.empty()) return "must not be empty";
    if (path[0] == '/') return "must be relative to the repository, not absolute";
    if (has_control_char(path, false)) return "must not contain control characters";
    std::size_t start = 0;
    while (start <= path.size()) {
        std::size_t end = path.find('/', start);
        if (end == std::string::npos) end = path.size();
        if (path.compare(start, end - start, "..") == 0) return "must not contain `..`";
        start = end + 1;
    }
    return "";
}

std::string join_names(const std::vector<std::string>& names, std::size_t max) {
    std::string out;
    for (std::size_t i = 0; i < names.size() && i < max; ++i) out += (i ? ", " : "") + names[i];
    if (names.size() > max) out += ", … (" + std::to_string(names.size() - max) + " more)";
    return out;
}

std::string field_path(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
}

void SchemaReader::issue(const YamlNode& at, std::string message) {
    if (m_issues.size() < kMaxIssues) m_issues.push_back(SourceIssue{at.line, at.column, std::move(message)});
}

const char* SchemaReader::kind_name(const YamlNode& node) {
    switch (node.kind) {
        case Kind::Null: return "empty";
        case Kind::Scalar: return "a single value";
        case Kind::Sequence: return "a list";
        case Kind::Map: return "a map";
    }
    return "?";
}

std::vector<std::pair<std::string, const YamlNode*>> SchemaReader::keyed(const YamlNode& map, const std::string& path,
                                                                         const std::vector<std::string>& known,
                                                                         const UnknownKeyMessage& explain_unknown) {
    std::vector<std::pair<std::string, const YamlNode*>> out;
    std::map<std::string, int> first_line;
    for (const auto& [key, value] : map.entries) {
        if (key.kind != Kind::Scalar || key.scalar.empty()) {
            issue(key, (path.empty() ? std::string("a key") : "a key in " + path) + " must be a non-empty string");
            continue;
        }
        std::string where = field_path(path, key.scalar);
        if (auto [it, fresh] = first_line.emplace(key.scalar, key.line); !fresh) {
            issue(key, "duplicate key `" + where + "` (first on line " + std::to_string(it->second) + ")");
            continue;
        }
        if (std::find(known.begin(), known.end(), key.scalar) == known.end()) {
            std::string message = explain_unknown ? explain_unknown(where, key.scalar) : "";
            issue(key, message.empty() ? "unknown key `" + where + "`; expected one of: " + join_names(known) : message);
            continue;
        }
        out.emplace_back(key.scalar, &value);
    }
    return out;
}

bool SchemaReader::expect_kind(const YamlNode& node, Kind kind, const std::string& path, const char* what) {
    if (node.kind == kind) return true;
    issue(node, path + " must be " + what + ", not " + kind_name(node));
    return false;
}

std::optional<std::string> SchemaReader::string_value(const YamlNode& node, const std::string& path,
                                                      std::size_t max_bytes, bool allow_empty) {
    if (node.kind != Kind::Scalar) {
        issue(node, path + " must be a string, not " + kind_name(node) +
                        (node.kind == Kind::Null ? " (write \"\" for an empty string)" : ""));
        return std::nullopt;
    }
    if (node.scalar.size() > max_bytes) {
        issue(node, path + " is " + std::to_string(node.scalar.size()) + " bytes; the limit is " +
                        std::to_string(max_bytes));
        return std::nullopt;
    }
    if (!allow_empty && node.scalar.find_first_not_of(" \t\r\n") == std::string::npos) {
        issue(node, path + " must not be empty");
        return std::nullopt;
    }
    return node.scalar;
}

namespace {

// The value of a plain scalar of at most 10 digits, or none for anything else.
std::optional<std::uint64_t> plain_digits(const YamlNode& node) {
    const std::string& s = node.scalar;
    bool digits = node.kind == Kind::Scalar && node.plain && !s.empty() && s.size() <= 10 &&
                  std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) return std::nullopt;
    std::uint64_t value = 0;
    std::from_chars(s.data(), s.data() + s.size(), value);
    return value;
}

}  // namespace

std::optional<std::uint32_t> SchemaReader::seconds_value(const YamlNode& node, const std::string& path) {
    auto value = plain_digits(node);
    if (!value || *value == 0) {
        issue(node, path + " must be a positive integer (seconds)");
        return std::nullopt;
    }
    if (*value > PipelineLimits::kMaxTimeoutSeconds) {
        issue(node, path + " must be at most " + std::to_string(PipelineLimits::kMaxTimeoutSeconds) + " (24 hours)");
        return std::nullopt;
    }
    return static_cast<std::uint32_t>(*value);
}

std::optional<std::uint32_t> SchemaReader::count_value(const YamlNode& node, const std::string& path,
                                                       std::uint32_t min, std::uint32_t max) {
    auto value = plain_digits(node);
    if (!value || *value < min || *value > max) {
        issue(node, path + " must be a whole number from " + std::to_string(min) + " to " + std::to_string(max));
        return std::nullopt;
    }
    return static_cast<std::uint32_t>(*value);
}

bool SchemaReader::count_within(const YamlNode& node, const std::string& path, std::size_t count, std::size_t max,
                                const char* one, const char* many) {
    if (count == 0) {
        issue(node, path + " must have at least one " + one);
        return false;
    }
    if (count > max) {
        issue(node, path + " has " + std::to_string(count) + " " + many + "; the limit is " + std::to_string(max));
        return false;
    }
    return true;
}

std::map<std::string, std::string> SchemaReader::env_value(const YamlNode& node, const std::string& path) {
    std::map<std::string, std::string> env;
    if (!expect_kind(node, Kind::Map, path, "a map of NAME: value")) return env;
    if (node.entries.size() > PipelineLimits::kMaxEnv) {
        issue(node, path + " has " + std::to_string(node.entries.size()) + " variables; the limit is " +
                        std::to_string(PipelineLimits::kMaxEnv));
        return env;
    }
    std::map<std::string, int> first_line;
    for (const auto& [key, value] : node.entries) {
        if (key.kind != Kind::Scalar || !is_env_name(key.scalar) || key.scalar.size() > PipelineLimits::kMaxNameBytes) {
            issue(key, "a name in " + path + " must be letters, digits and _, not starting with a digit");
            continue;
        }
        std::string where = path + "." + key.scalar;
        if (auto [it, fresh] = first_line.emplace(key.scalar, key.line); !fresh) {
            issue(key, "duplicate key `" + where + "` (first on line " + std::to_string(it->second) + ")");
            continue;
        }
        if (auto text = string_value(value, where, PipelineLimits::kMaxValueBytes, true)) env[key.scalar] = *text;
    }
    return env;
}

}  // namespace kiln::ci
