// GithubConfig: what the GitHub integration needs from kilnd's config (file, KILN_GITHUB_* env).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace kiln::ci::github {

inline constexpr const char* kDefaultApiUrl = "https://api.github.com";

struct GithubConfig {
    std::string webhook_secret;             // github_webhook_secret; empty: the webhook answers 503
    std::string api_url = kDefaultApiUrl;   // github_api_url; GitHub Enterprise: https://host/api/v3
    std::string token;                      // github_token; empty: no commit statuses are posted
    std::string public_url;                 // public_url: where people reach kilnd (target_url of statuses)
    // owner/repo (lowercase) -> its own webhook secret (github_webhook_secrets_dir): that
    // repository's deliveries verify against it, never against webhook_secret.
    std::map<std::string, std::string> repo_webhook_secrets;
    // github_repos: owner/repo or owner/* (lowercase); empty: every repository.
    std::vector<std::string> repos;
};

// github_repos' comma-separated text as GithubConfig::repos (lowercase, blanks dropped).
std::vector<std::string> parse_repo_allowlist(const std::string& text);
// Whether `full_name` (any case) is on `allowlist`; an empty allowlist allows every repository.
bool repo_allowed(const std::vector<std::string>& allowlist, const std::string& full_name);

}  // namespace kiln::ci::github
