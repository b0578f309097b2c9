// WebhookEvent: the few fields of a GitHub webhook payload (pull_request, push, ping) a CI job needs,
// parsed from hostile JSON (the signature proves the sender, not that the fields are sane).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace kiln::ci::github {

enum class EventKind {
    PullRequest,  // opened, synchronize, reopened: run the head commit
    Push,         // run the pushed commit
    Ping,         // sent when the hook is created
    Ignored,      // anything else: answered 202 with `reason`
};

struct WebhookEvent {
    EventKind kind = EventKind::Ignored;
    std::string reason;          // Ignored: why
    std::string action;          // pull_request: the action
    std::string repo_full_name;  // owner/name of the base repository: statuses are posted there
    std::string clone_url;       // the base repository's clone URL (a PR's head commit is fetchable from it)
    std::string git_host;        // host of clone_url ("" for a local path): the untrusted job's allowlist
    std::string sha;             // the commit to run (40 or 64 hex)
    std::string ref;             // refs/heads/... for a push, the PR head branch for a PR
    int64_t pr_number = 0;
    std::string head_repo_full_name;  // PR: where the head commit comes from
    bool trusted = true;              // false: the PR's head is a fork or another repository
    std::string untrusted_reason;
    std::string sender;
};

// `event_name` is X-GitHub-Event. invalid_argument naming the field when the payload of an event
// we act on is not JSON or lacks what a job needs; events we do not act on are Ignored.
Result<WebhookEvent> parse_webhook_event(std::string_view event_name, std::string_view body);

// "github.com" for https://github.com/o/r.git, git@github.com:o/r.git, ssh://git@host:22/o/r;
// "" for a local path or a file:// URL.
std::string git_host_of(std::string_view url);

}  // namespace kiln::ci::github
