// libFuzzer target: GitHub webhook payloads (src/ci/github/webhook_event.cpp) and signature checks
// must never crash, and an event we act on must carry only sane fields.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ci/github/webhook_event.h"
#include "ci/github/webhook_signature.h"

using namespace kiln::ci::github;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    // The first byte picks the X-GitHub-Event header; the rest is the body.
    static constexpr const char* kEvents[] = {"pull_request", "push", "ping", "issues"};
    std::string_view event = kEvents[data[0] % 4];
    std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);

    auto parsed = parse_webhook_event(event, body);
    if (parsed.ok() && (parsed->kind == EventKind::PullRequest || parsed->kind == EventKind::Push)) {
        const WebhookEvent& ev = *parsed;
        if (ev.sha.size() != 40 && ev.sha.size() != 64) abort();
        if (ev.sha.find_first_not_of("0123456789abcdef") != std::string::npos) abort();
        if (ev.repo_full_name.find('/') == std::string::npos || ev.repo_full_name.find("..") == 0) abort();
        if (ev.repo_full_name.find_first_of("?#% \n") != std::string::npos) abort();
        if (ev.clone_url.empty() || ev.clone_url[0] == '-') abort();
        if (ev.kind == EventKind::PullRequest && ev.pr_number <= 0) abort();
        if (!ev.trusted && ev.untrusted_reason.empty()) abort();
    } else if (!parsed.ok() && parsed.error().code != kiln::ErrorCode::InvalidArgument) {
        abort();
    }
    (void)git_host_of(body);
    // A header derived from the input never verifies against another secret's MAC.
    if (verify_signature("secret", body, body)) abort();
    std::string good = signature_header("secret", body);
    if (!verify_signature("secret", body, good)) abort();
    return 0;
}
