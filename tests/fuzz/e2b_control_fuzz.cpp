// libFuzzer target: what an E2B client sends the E2B listener's control plane (src/kilnd/e2b): a
// create body, and a list query with its paging cursor. Every input is accepted or refused with
// one of the two codes the listener maps to 400; what is accepted is within its limits; a page is
// ordered, within its limit, and its cursor decodes to where it ended.
// Input: the create body, then "\n--\n", then a list query string.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "kilnd/e2b/list_query.h"
#include "kilnd/e2b/sandbox_json.h"

using namespace kiln::daemon;
using namespace kiln::daemon::e2b;
using kiln::fuzz::check;

namespace {

template <typename T>
void check_refusal(const kiln::Result<T>& r) {
    if (r.ok()) return;
    check(r.error().code == kiln::ErrorCode::MalformedBody || r.error().code == kiln::ErrorCode::InvalidArgument);
    check(!r.error().message.empty());
}

// A few sandboxes at colliding times, so that ties and the cursor's tie-break are exercised.
std::vector<SandboxInfo> sandboxes() {
    std::vector<SandboxInfo> all;
    for (int i = 0; i < 7; ++i) {
        SandboxInfo s = SandboxInfo::from_row(i == 3 ? SandboxState::Deleted : SandboxState::Running);
        s.id = "sb-00000000000" + std::to_string(i);
        s.created_at_ms = 1000 * (i / 2);
        all.push_back(s);
    }
    return all;
}

bool in_order(const SandboxInfo& a, const SandboxInfo& b, bool newest_first) {
    if (a.created_at_ms != b.created_at_ms) return newest_first ? a.created_at_ms > b.created_at_ms : a.created_at_ms < b.created_at_ms;
    return newest_first ? a.id > b.id : a.id < b.id;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 64 * 1024) return 0;  // bodies are capped at 1 MiB; longer inputs only slow the fuzzer
    auto [body, query] = kiln::fuzz::split_once(kiln::fuzz::as_string(data, size), "\n--\n");

    auto create = parse_new_sandbox(body);
    check_refusal(create);
    if (create.ok()) {
        check(!create->template_id.empty());
        check(create->ttl_seconds.has_value());
        if (create->network) {
            check(create->network->allow.size() <= net::kMaxAllowRules);
            check(create->network->mode == net::NetworkMode::Allowlist || create->network->allow.empty());
        }
    }

    auto cursor = decode_cursor(query);
    check_refusal(cursor);
    if (cursor.ok()) check(encode_cursor(*cursor) == query);

    http::Request req;
    req.params = http::parse_query(query);
    auto list = parse_list_query(req);
    check_refusal(list);
    if (list.ok()) {
        check(list->limit >= 1 && list->limit <= kMaxListLimit);
        for (const auto& [k, v] : list->metadata) check(!k.empty());
        ListPage page = page_of(sandboxes(), *list);
        check(page.items.size() <= list->limit);
        for (size_t i = 1; i < page.items.size(); ++i) check(in_order(page.items[i - 1], page.items[i], list->newest_first));
        for (const auto& s : page.items) check(s.state() == SandboxState::Running);
        if (!page.next_token.empty()) {
            auto next = decode_cursor(page.next_token);
            check(next.ok() && next->id == page.items.back().id);
        }
    }
    return 0;
}
