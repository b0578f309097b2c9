// Scopes: what a token may do (docs/tenants.md). A token holds a set; `admin` implies every other.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace kiln::daemon {

enum class Scope : uint32_t {
    Admin = 1u << 0,      // everything: built-in templates, local-path jobs, other tokens' objects
    Sandboxes = 1u << 1,  // create and use its own sandboxes and snapshots
    CiSubmit = 1u << 2,   // queue untrusted jobs and read its own
    CiTrusted = 1u << 3,  // queue trusted jobs (they may get their repository's secrets)
    CiRead = 1u << 4,     // read every job's record, log, results and artifacts
};
inline constexpr Scope kAllScopes[] = {Scope::Admin, Scope::Sandboxes, Scope::CiSubmit, Scope::CiTrusted, Scope::CiRead};

using ScopeSet = uint32_t;

std::string_view scope_name(Scope scope);  // "admin", "sandboxes", "ci:submit", "ci:trusted", "ci:read"
std::optional<Scope> parse_scope(std::string_view name);
// "sandboxes,ci:submit" (commas, optional spaces). Empty, unknown or repeated names are errors
// that name the offender and list the known scopes.
Result<ScopeSet> parse_scope_list(std::string_view text);
std::vector<std::string> scope_names(ScopeSet set);  // in kAllScopes order
std::string scope_list(ScopeSet set);                 // "a,b"
// Admin holds every scope.
inline bool holds(ScopeSet set, Scope scope) {
    return (set & static_cast<uint32_t>(Scope::Admin)) != 0 || (set & static_cast<uint32_t>(scope)) != 0;
}

// Per-token limits. An unset field takes kilnd's default for every token (config keys
// token_max_*, docs/kilnd.md); a token created with --quota overrides it.
struct TokenQuota {
    std::optional<int64_t> sandboxes;         // live sandboxes
    std::optional<int64_t> memory_mib;        // summed over live sandboxes
    std::optional<int64_t> snapshots;         // kept snapshots
    std::optional<int64_t> snapshot_mib;      // their size on disk
    std::optional<int64_t> queued_jobs;       // jobs not finished (queued or running)
    std::optional<int64_t> lifetime_seconds;  // a sandbox's whole life, however often its TTL is extended
};
// "sandboxes=4,memory_mib=2048" into a quota; unknown keys and bad numbers are errors.
Result<TokenQuota> parse_quota_list(std::string_view text);
std::string quota_json(const TokenQuota& quota);  // {"sandboxes":4,...}, set fields only
TokenQuota parse_quota_json(const std::string& text);  // stored; anything unreadable reads as unset
// Every field of `quota` that is unset, taken from `defaults`.
TokenQuota with_defaults(TokenQuota quota, const TokenQuota& defaults);

}  // namespace kiln::daemon
