// Ids and input checks for sandboxes and snapshots (see ids.h).
#include "daemon/sandboxes/ids.h"


#include "base/random.h"

namespace kiln::daemon {
namespace {

bool is_hex_id(const std::string& id, const std::string& prefix) {
    if (id.size() != prefix.size() + 12 || id.compare(0, prefix.size(), prefix) != 0) return false;
    for (size_t i = prefix.size(); i < id.size(); ++i) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

bool label_key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

Error invalid(const std::string& message) { return make_error(ErrorCode::InvalidArgument, message); }

}  // namespace

Result<std::string> new_sandbox_id() { return "sb-" + TRY(random_hex(6)); }
Result<std::string> new_snapshot_id() { return "snap-" + TRY(random_hex(6)); }
bool is_sandbox_id(const std::string& id) { return is_hex_id(id, "sb-"); }
bool is_snapshot_id(const std::string& id) { return is_hex_id(id, "snap-"); }

Status validate_metadata(const Labels& metadata) {
    if (metadata.size() > 32) return invalid("metadata has " + std::to_string(metadata.size()) + " keys; at most 32");
    for (const auto& [key, value] : metadata) {
        if (key.empty() || key.size() > 64) return invalid("metadata keys must be 1-64 characters");
        for (char c : key)
            if (!label_key_char(c)) return invalid("metadata key '" + key + "' has a character outside A-Z a-z 0-9 _ . -");
        if (value.size() > 256) return invalid("metadata value of '" + key + "' is over 256 bytes");
    }
    return ok_status();
}

Status validate_env(const Labels& env) {
    if (env.size() > 128) return invalid("env has " + std::to_string(env.size()) + " variables; at most 128");
    for (const auto& [name, value] : env) {
        if (name.empty() || name.size() > 128) return invalid("env names must be 1-128 characters");
        if (name[0] >= '0' && name[0] <= '9') return invalid("env name '" + name + "' starts with a digit");
        for (char c : name) {
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
            if (!ok) return invalid("env name '" + name + "' has a character outside A-Z a-z 0-9 _");
        }
        if (value.size() > 32 * 1024) return invalid("env value of '" + name + "' is over 32 KiB");
        if (value.find('\0') != std::string::npos) return invalid("env value of '" + name + "' contains a NUL byte");
    }
    return ok_status();
}

Status validate_name(const std::string& name) {
    if (name.empty() || name.size() > 63) return invalid("name must be 1-63 characters");
    for (size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!(alnum || (i > 0 && (c == '.' || c == '_' || c == '-'))))
            return invalid("name must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$");
    }
    return ok_status();
}

}  // namespace kiln::daemon
