// kilnd's API objects as JSON, exactly as api/openapi.yaml shapes them.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "base/result.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "kilnd/http/exec_output.h"
#include "proto/messages.h"

namespace kiln::daemon::http {

using json = nlohmann::json;

// RFC 3339 UTC with milliseconds: 2026-11-28T15:21:06.123Z.
std::string rfc3339_ms(int64_t unix_ms);

json render(const SandboxInfo& sandbox);
json render(const SnapshotInfo& snapshot);
json render(const TemplateInfo& info);
// A guest FileInfo; `path` is the path asked about (stat) or the folder + name (list).
json render(const proto::FileInfo& info, const std::string& path);
// A buffered exec's answer: each stream as text or base64 (<name>_encoding), whether the host cut
// it (<name>_truncated) and how many bytes it dropped (<name>_dropped_bytes).
json render_exec_result(const proto::ExecResult& result, const CappedOutput& out, const CappedOutput& err);
json render_error(const Error& error);
// A VM's failure as the API shows it: without the "; qemu.log:" section the VM layer appends
// (QEMU's own lines name host paths); the guest's console lines and the reason stay.
std::string without_host_logs(const std::string& message);

// JSON text, with bytes that are not valid UTF-8 replaced by U+FFFD (guest output is arbitrary).
std::string dump(const json& value);

// Splits `bytes` into the longest prefix that does not end inside a UTF-8 sequence and keeps the
// rest for the next chunk, so streamed output is not mangled at chunk boundaries.
class Utf8Carry {
public:
    std::string take(std::string_view bytes);
    std::string flush();

private:
    std::string m_pending;
};

}  // namespace kiln::daemon::http
