// Sandbox and snapshot ids, and the checks on what clients send as labels, env and names.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "daemon/sandboxes/sandbox_service.h"

namespace kiln::daemon {

Result<std::string> new_sandbox_id();   // sb-<12 hex>
Result<std::string> new_snapshot_id();  // snap-<12 hex>
bool is_sandbox_id(const std::string& id);
bool is_snapshot_id(const std::string& id);

// At most 32 keys; keys match ^[A-Za-z0-9_.-]{1,64}$; values at most 256 bytes (invalid_argument).
Status validate_metadata(const Labels& metadata);
// At most 128 variables; names are shell-style ([A-Za-z_][A-Za-z0-9_]*, at most 128); values at
// most 32 KiB and without NUL.
Status validate_env(const Labels& env);
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ (a snapshot's name).
Status validate_name(const std::string& name);

}  // namespace kiln::daemon
