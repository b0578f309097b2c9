// Parses GitHub webhook payloads (nlohmann, no exceptions out) into WebhookEvent.
#include "ci/github/webhook_event.h"

#include <cctype>

#include <nlohmann/json.hpp>

namespace kiln::ci::github {
namespace {

using nlohmann::json;

Error bad(const std::string& what) { return make_error(ErrorCode::InvalidArgument, "webhook payload: " + what); }

// The object or string at `key`, or null: never throws, whatever the payload's types are.
const json* member(const json& j, const char* key) {
    if (!j.is_object()) return nullptr;
    auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
}

std::string text(const json& j, const char* key) {
    const json* m = member(j, key);
    return m && m->is_string() ? m->get<std::string>() : std::string();
}

const json& object(const json& j, const char* key) {
    static const json kNull;
    const json* m = member(j, key);
    return m && m->is_object() ? *m : kNull;
}

bool is_sha(const std::string& s) {
    if (s.size() != 40 && s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

// owner/name as GitHub allows them; it goes into the statuses URL path, so nothing else passes.
bool is_full_name(const std::string& s) {
    if (s.empty() || s.size() > 200) return false;
    size_t slash = s.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == s.size() || s.find('/', slash + 1) != std::string::npos)
        return false;
    for (char c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/')) return false;
    return s.substr(slash + 1) != "." && s.substr(slash + 1) != "..";
}

// A URL git can clone, or an absolute local path; never something git could read as an option.
bool is_clone_url(const std::string& s) {
    if (s.empty() || s.size() > 2048 || s[0] == '-') return false;
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return false;
    return s[0] == '/' || s.rfind("https://", 0) == 0 || s.rfind("http://", 0) == 0 || s.rfind("git://", 0) == 0 ||
           s.rfind("ssh://", 0) == 0 || s.rfind("file://", 0) == 0 || s.rfind("git@", 0) == 0;
}

// The repository fields every acted-on event has.
Status read_repository(const json& payload, WebhookEvent& ev) {
    const json& repo = object(payload, "repository");
    if (repo.is_null()) return bad("no repository object");
    ev.repo_full_name = text(repo, "full_name");
    if (!is_full_name(ev.repo_full_name)) return bad("repository.full_name is missing or not owner/name");
    ev.clone_url = text(repo, "clone_url");
    if (!is_clone_url(ev.clone_url)) return bad("repository.clone_url is missing or not a git URL");
    ev.git_host = git_host_of(ev.clone_url);
    ev.sender = text(object(payload, "sender"), "login");
    return ok_status();
}

Result<WebhookEvent> parse_pull_request(const json& payload) {
    WebhookEvent ev;
    ev.kind = EventKind::PullRequest;
    ev.action = text(payload, "action");
    if (ev.action != "opened" && ev.action != "synchronize" && ev.action != "reopened") {
        ev.kind = EventKind::Ignored;
        ev.reason = "pull_request action '" + ev.action.substr(0, 64) + "' does not start a job";
        return ev;
    }
    TRY(read_repository(payload, ev));
    const json& pr = object(payload, "pull_request");
    if (pr.is_null()) return bad("no pull_request object");
    const json* number = member(pr, "number");
    if (!number || !number->is_number_integer()) number = member(payload, "number");
    if (!number || !number->is_number_integer() || number->get<int64_t>() <= 0) return bad("no pull request number");
    ev.pr_number = number->get<int64_t>();

    const json& head = object(pr, "head");
    const json& base = object(pr, "base");
    ev.sha = text(head, "sha");
    if (!is_sha(ev.sha)) return bad("pull_request.head.sha is missing or not a commit id");
    ev.ref = text(head, "ref");

    // Trust only a head that lives in the base repository itself: a fork (or a deleted fork,
    // whose head.repo is null) runs without secrets on the restricted network.
    const json& head_repo = object(head, "repo");
    const json& base_repo = object(base, "repo");
    ev.head_repo_full_name = text(head_repo, "full_name");
    std::string base_name = text(base_repo, "full_name");
    if (base_name.empty()) base_name = ev.repo_full_name;
    const json* fork = member(head_repo, "fork");
    const json* head_id = member(head_repo, "id");
    const json* base_id = member(base_repo, "id");
    ev.trusted = false;
    if (head_repo.is_null()) ev.untrusted_reason = "the head repository is gone (a deleted fork)";
    else if (fork && fork->is_boolean() && fork->get<bool>()) ev.untrusted_reason = "the head repository is a fork";
    else if (ev.head_repo_full_name != base_name || base_name != ev.repo_full_name)
        ev.untrusted_reason = "the head repository is not the base repository";
    else if (head_id && base_id && *head_id != *base_id) ev.untrusted_reason = "the head repository id differs from the base's";
    else ev.trusted = true;
    return ev;
}

Result<WebhookEvent> parse_push(const json& payload) {
    WebhookEvent ev;
    ev.kind = EventKind::Push;
    const json* deleted = member(payload, "deleted");
    std::string after = text(payload, "after");
    if ((deleted && deleted->is_boolean() && deleted->get<bool>()) || after == std::string(40, '0')) {
        ev.kind = EventKind::Ignored;
        ev.reason = "push deletes a ref; nothing to run";
        return ev;
    }
    TRY(read_repository(payload, ev));
    ev.sha = after;
    if (!is_sha(ev.sha)) return bad("after is missing or not a commit id");
    ev.ref = text(payload, "ref");
    return ev;
}

}  // namespace

std::string git_host_of(std::string_view url) {
    std::string_view rest;
    auto scheme = url.find("://");
    if (scheme != std::string_view::npos) {
        if (url.substr(0, scheme) == "file") return "";
        rest = url.substr(scheme + 3);
        auto slash = rest.find('/');
        rest = rest.substr(0, slash);
        auto at = rest.rfind('@');
        if (at != std::string_view::npos) rest = rest.substr(at + 1);
        if (!rest.empty() && rest[0] == '[') {  // [v6]:port
            auto close = rest.find(']');
            return close == std::string_view::npos ? "" : std::string(rest.substr(1, close - 1));
        }
        auto colon = rest.find(':');
        return std::string(rest.substr(0, colon));
    }
    // scp-like user@host:path (no slash before the colon).
    auto colon = url.find(':');
    auto slash = url.find('/');
    if (colon == std::string_view::npos || (slash != std::string_view::npos && slash < colon)) return "";
    rest = url.substr(0, colon);
    auto at = rest.rfind('@');
    if (at != std::string_view::npos) rest = rest.substr(at + 1);
    return std::string(rest);
}

Result<WebhookEvent> parse_webhook_event(std::string_view event_name, std::string_view body) {
    if (event_name != "pull_request" && event_name != "push" && event_name != "ping") {
        WebhookEvent ev;
        ev.reason = "event '" + std::string(event_name.substr(0, 64)) + "' does not start a job";
        return ev;
    }
    json payload = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (payload.is_discarded() || !payload.is_object()) return bad("not a JSON object");
    try {
        if (event_name == "ping") {
            WebhookEvent ev;
            ev.kind = EventKind::Ping;
            ev.reason = "pong";
            return ev;
        }
        return event_name == "push" ? parse_push(payload) : parse_pull_request(payload);
    } catch (const json::exception& e) {
        // Every access above checks types first; this is the boundary in case one does not.
        return bad(e.what());
    }
}

}  // namespace kiln::ci::github
