// E2B's control-plane bodies in Kiln's terms: its NewSandbox request as a CreateRequest, and a
// SandboxInfo as its Sandbox / ListedSandbox / SandboxDetail answers (E2B's openapi spec).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "daemon/sandboxes/sandbox_service.h"

namespace kiln::daemon::e2b {

// The envd version every sandbox reports. E2B's JS SDK gates features on it (docs/e2b.md):
// >= 0.4.0 sends no default username (envd's default user answers), >= 0.5.2 allows
// closeStdin, >= 0.5.7 uploads streams as application/octet-stream; 0.6.2+ (file metadata),
// 0.6.3+ (watch entries) and 0.6.4+ (network mounts) are what the listener does not serve, and
// with 0.5.7 the SDK refuses them itself with a clear message.
inline constexpr const char* kEnvdVersion = "0.5.7";
// E2B's default sandbox timeout when a create names none (its API's default), in seconds.
inline constexpr int64_t kDefaultTimeoutSeconds = 15;

// E2B's NewSandbox body: templateID (required; `base`, E2B's default, is Kiln's `base`),
// timeout (seconds), metadata and envVars (string maps), allow_internet_access and network
// (allowOut / denyOut: an allowlist of addresses when denyOut is everything), autoPause
// (auto_pause). What Kiln cannot do (a pause without memory, auto-resume on traffic, mcp, volume
// mounts, names in allowOut) is invalid_argument saying so, never silently dropped. Malformed
// JSON: malformed_body.
Result<CreateRequest> parse_new_sandbox(std::string_view body);

// E2B's "running" or "paused" (pausing, paused) for a state visible to it.
const char* e2b_state(SandboxState state);
// Visible through E2B's API: creating, running, pausing, paused, resuming. Ended (and deleting)
// sandboxes are not found there.
bool visible_to_e2b(SandboxState state);

// The answer to a create or a connect.
nlohmann::json render_sandbox(const SandboxInfo& info, const std::string& access_token);
// One entry of a list.
nlohmann::json render_listed_sandbox(const SandboxInfo& info);
// GET /sandboxes/{id}: the listed fields plus the access token.
nlohmann::json render_sandbox_detail(const SandboxInfo& info, const std::string& access_token);

}  // namespace kiln::daemon::e2b
