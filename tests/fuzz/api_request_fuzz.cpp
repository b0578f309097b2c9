// libFuzzer target: kilnd's request parsers (bodies and query values from any API client) accept or
// refuse every input, never crash, and what they accept is within the ranges api/openapi.yaml gives.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "kilnd/http/json_render.h"
#include "kilnd/http/request_parsing.h"

using namespace kiln::daemon;
using namespace kiln::daemon::http;
using kiln::fuzz::check;

namespace {

void check_labels(const Labels& labels, size_t max_keys) {
    check(labels.size() <= max_keys);
    for (const auto& [k, v] : labels) {
        check(!k.empty() && k.size() <= kMaxMetadataKeyLength);
        check(v.size() <= kMaxMetadataValueLength);
    }
}

// A refusal is always one of the two codes the HTTP layer maps (400 / 422), with a message.
template <typename T>
void check_refusal(const kiln::Result<T>& r) {
    if (r.ok()) return;
    check(r.error().code == kiln::ErrorCode::MalformedBody || r.error().code == kiln::ErrorCode::InvalidArgument);
    check(!r.error().message.empty());
    (void)dump(render_error(r.error()));
}

bool path_ok(const std::string& p) {
    if (p.empty() || p[0] != '/' || p.find('\0') != std::string::npos) return false;
    return p.find("/../") == std::string::npos && (p.size() < 3 || p.compare(p.size() - 3, 3, "/..") != 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 64 * 1024) return 0;  // bodies are capped at 1 MiB; longer inputs only slow the fuzzer
    std::string_view text(reinterpret_cast<const char*>(data), size);

    auto create = parse_create(text);
    check_refusal(create);
    if (create.ok()) {
        check(!create->template_id.empty());
        if (create->ttl_seconds) check(*create->ttl_seconds >= 1 && *create->ttl_seconds <= kMaxTtlSecondsAccepted);
        if (create->vcpus) check(*create->vcpus >= 1);
        if (create->memory_mib) check(*create->memory_mib >= 1);
        check_labels(create->metadata, kMaxMetadataKeys);
        check(create->env.size() <= kMaxEnvEntries);
    }

    auto ttl = parse_patch_ttl(text);
    check_refusal(ttl);
    if (ttl.ok()) check(*ttl >= 1 && *ttl <= kMaxTtlSecondsAccepted);

    auto exec = parse_exec(text);
    check_refusal(exec);
    if (exec.ok()) {
        const auto& r = exec->request;
        check(r.argv.empty() != r.shell.empty());  // exactly one of argv and cmd
        for (const auto& a : r.argv) check(a.find('\0') == std::string::npos);
        check(r.shell.find('\0') == std::string::npos);
        check(r.timeout_ms > 0);
        check(path_ok(r.cwd));
        check(r.stdin == exec->stdin_data.has_value());
        for (const auto& [k, v] : r.env) check(!k.empty() && k.find('=') == std::string::npos);
    }

    auto name = parse_snapshot_name(text);
    check_refusal(name);
    if (name.ok()) check(name->size() <= 63);

    auto fork = parse_fork(text);
    check_refusal(fork);
    if (fork.ok()) check_labels(fork->metadata, kMaxMetadataKeys);

    auto path = validate_guest_path(text);
    check_refusal(path);
    if (path.ok()) check(path_ok(*path));

    auto mode = parse_mode(text);
    check_refusal(mode);
    if (mode.ok()) check(*mode <= 07777);

    // Query parameters: "key=value" pairs separated by '&', as httplib hands them over decoded.
    std::multimap<std::string, std::string> params;
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t end = text.find('&', pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view pair = text.substr(pos, end - pos);
        size_t eq = pair.find('=');
        params.emplace(std::string(pair.substr(0, eq)), eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1)));
        pos = end + 1;
    }
    auto filter = parse_list_filter(params);
    check_refusal(filter);
    if (filter.ok())
        for (const auto& [k, v] : filter->metadata) check(!k.empty() && k.size() <= kMaxMetadataKeyLength);

    // Whatever bytes an accepted request carries, its JSON rendering is valid UTF-8 JSON.
    if (create.ok()) {
        SandboxInfo s;
        s.id = "sb-000000000000";
        s.template_id = create->template_id;
        s.metadata = create->metadata;
        std::string out = dump(render(s));
        check(!json::parse(out, nullptr, false).is_discarded());
    }
    return 0;
}
