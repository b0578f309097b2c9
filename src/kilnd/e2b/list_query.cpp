// E2B's list queries and paging; see list_query.h.
#include "kilnd/e2b/list_query.h"

#include <algorithm>

#include "kilnd/e2b/sandbox_json.h"

namespace kiln::daemon::e2b {

namespace {

Error invalid(const std::string& message) { return make_error(ErrorCode::InvalidArgument, message); }

std::vector<std::string> split(const std::string& text, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    while (true) {
        size_t at = text.find(sep, start);
        out.push_back(text.substr(start, at == std::string::npos ? std::string::npos : at - start));
        if (at == std::string::npos) return out;
        start = at + 1;
    }
}

bool all_digits(const std::string& text) {
    return !text.empty() && text.size() <= 18 && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Newest first: later created_at, then the larger id (ids are random, so only a tie-break).
bool before(const SandboxInfo& a, const SandboxInfo& b, bool newest_first) {
    if (a.created_at_ms != b.created_at_ms) return newest_first ? a.created_at_ms > b.created_at_ms : a.created_at_ms < b.created_at_ms;
    return newest_first ? a.id > b.id : a.id < b.id;
}

bool after_cursor(const SandboxInfo& s, const ListCursor& c, bool newest_first) {
    if (s.created_at_ms != c.created_at_ms) return newest_first ? s.created_at_ms < c.created_at_ms : s.created_at_ms > c.created_at_ms;
    return newest_first ? s.id < c.id : s.id > c.id;
}

}  // namespace

std::string encode_cursor(const ListCursor& cursor) { return std::to_string(cursor.created_at_ms) + "." + cursor.id; }

Result<ListCursor> decode_cursor(const std::string& token) {
    size_t dot = token.find('.');
    if (dot == std::string::npos || !all_digits(token.substr(0, dot)) || token.size() - dot - 1 == 0 || token.size() > 128)
        return invalid("nextToken is not one this server gave out");
    std::string id = token.substr(dot + 1);
    for (char c : id)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return invalid("nextToken is not one this server gave out");
    return ListCursor{std::stoll(token.substr(0, dot)), id};
}

Result<ListQuery> parse_list_query(const http::Request& req) {
    ListQuery query;
    if (req.has_param("metadata")) {
        for (const auto& [key, value] : http::parse_query(req.get_param_value("metadata"))) {
            std::string k = http::percent_decode(key, false);
            if (k.empty()) return invalid("metadata: a filter needs a key (key=value pairs joined by &)");
            query.metadata[k] = http::percent_decode(value, false);
        }
    }
    if (req.has_param("state")) {
        query.running = query.paused = false;
        // E2B's SDKs send state=running,paused (one parameter); state=a&state=b works too.
        for (auto it = req.params.lower_bound("state"); it != req.params.upper_bound("state"); ++it)
            for (const auto& name : split(it->second, ',')) {
                if (name == "running") query.running = true;
                else if (name == "paused") query.paused = true;
                else return invalid("state '" + name.substr(0, 32) + "' is neither running nor paused");
            }
    }
    if (req.has_param("order")) {
        std::string order = req.get_param_value("order");
        if (order != "asc" && order != "desc") return invalid("order must be asc or desc");
        query.newest_first = order == "desc";
    }
    if (req.has_param("limit")) {
        std::string limit = req.get_param_value("limit");
        if (!all_digits(limit) || std::stoll(limit) < 1 || std::stoll(limit) > static_cast<long long>(kMaxListLimit))
            return invalid("limit must be between 1 and " + std::to_string(kMaxListLimit));
        query.limit = static_cast<size_t>(std::stoll(limit));
    }
    if (req.has_param("nextToken") && !req.get_param_value("nextToken").empty())
        query.after = TRY(decode_cursor(req.get_param_value("nextToken")));
    return query;
}

ListPage page_of(std::vector<SandboxInfo> all, const ListQuery& query) {
    std::erase_if(all, [&](const SandboxInfo& s) {
        if (!visible_to_e2b(s.state())) return true;
        const bool paused = std::string(e2b_state(s.state())) == "paused";
        if (paused ? !query.paused : !query.running) return true;
        return query.after && !after_cursor(s, *query.after, query.newest_first);
    });
    std::sort(all.begin(), all.end(), [&](const SandboxInfo& a, const SandboxInfo& b) { return before(a, b, query.newest_first); });
    ListPage page;
    if (all.size() > query.limit) {
        all.resize(query.limit);
        page.next_token = encode_cursor(ListCursor{all.back().created_at_ms, all.back().id});
    }
    page.items = std::move(all);
    return page;
}

}  // namespace kiln::daemon::e2b
