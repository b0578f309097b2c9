// E2B's sandbox list queries (GET /sandboxes, GET /v2/sandboxes): the metadata and state
// filters, the order, and paging by `limit` and the X-Next-Token cursor.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "kilnd/http/http_message.h"

namespace kiln::daemon::e2b {

inline constexpr size_t kDefaultListLimit = 100;
inline constexpr size_t kMaxListLimit = 100;

// Where a page ends: a sandbox's (created_at, id). Kept by value, so a cursor whose sandbox was
// killed meanwhile still knows where it stood.
struct ListCursor {
    int64_t created_at_ms = 0;
    std::string id;
};

struct ListQuery {
    Labels metadata;           // every pair must match
    bool running = true;       // states asked for (both unless `state` names some)
    bool paused = true;
    bool newest_first = true;  // order=desc (the default) or asc
    size_t limit = kDefaultListLimit;
    std::optional<ListCursor> after;
};

// The query of `req`. `metadata` is what E2B's SDKs send: a query string (k=v&k2=v2) whose keys
// and values were each percent-encoded before, so they are decoded again here. Anything
// malformed (a state other than running/paused, a limit outside 1..100, a cursor not ours) is
// invalid_argument naming it.
Result<ListQuery> parse_list_query(const http::Request& req);

struct ListPage {
    std::vector<SandboxInfo> items;
    std::string next_token;  // empty: the last page
};

// `all` (the caller's live sandboxes) filtered by state, ordered, cut after the cursor and to the
// limit. (The metadata filter is the service's, ListFilter::metadata.)
ListPage page_of(std::vector<SandboxInfo> all, const ListQuery& query);

std::string encode_cursor(const ListCursor& cursor);
Result<ListCursor> decode_cursor(const std::string& token);

}  // namespace kiln::daemon::e2b
