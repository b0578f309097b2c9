// Request bodies and query values of kilnd's API -> typed requests, validated as api/openapi.yaml
// says. No HTTP here, so the parsers can be fuzzed (tests/fuzz/api_request_fuzz.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "proto/messages.h"

namespace kiln::daemon::http {

// Error codes: a body that is not JSON or not an object is "malformed" (the HTTP layer answers
// 400 invalid_argument); any other problem is invalid_argument (422).

inline constexpr int64_t kMaxTtlSecondsAccepted = 2147483647;
inline constexpr size_t kMaxMetadataKeys = 32;
inline constexpr size_t kMaxMetadataKeyLength = 64;
inline constexpr size_t kMaxMetadataValueLength = 256;
inline constexpr size_t kMaxEnvEntries = 256;
inline constexpr double kDefaultExecTimeoutSeconds = 600;

// An exec as the API takes it, already translated for the agent (env not yet merged with the
// sandbox's own).
struct ExecBody {
    proto::ExecRequest request;
    std::optional<std::string> stdin_data;
};

Result<CreateRequest> parse_create(std::string_view body);
Result<int64_t> parse_patch_ttl(std::string_view body);
Result<ExecBody> parse_exec(std::string_view body);
Result<std::string> parse_snapshot_name(std::string_view body);  // empty body or {}: ""
Result<ForkRequest> parse_fork(std::string_view body);
// POST /v1/sandboxes/{id}/resume: an empty body or {} (the TTL left at the pause), or {ttl_seconds}.
Result<std::optional<int64_t>> parse_resume(std::string_view body);

// An absolute guest path without "." or ".." components, NUL bytes or over-long names.
Result<std::string> validate_guest_path(std::string_view path);
// "0644" / "644" / "0755" -> mode bits.
Result<uint32_t> parse_mode(std::string_view text);
// The `metadata.<key>=<value>` and `state` query parameters of GET /v1/sandboxes.
Result<ListFilter> parse_list_filter(const std::multimap<std::string, std::string>& params);

}  // namespace kiln::daemon::http
