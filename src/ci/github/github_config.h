// GithubConfig: what the GitHub integration needs from kilnd's config (file, KILN_GITHUB_* env).
#pragma once

#include <string>

namespace kiln::ci::github {

inline constexpr const char* kDefaultApiUrl = "https://api.github.com";

struct GithubConfig {
    std::string webhook_secret;             // github_webhook_secret; empty: the webhook answers 503
    std::string api_url = kDefaultApiUrl;   // github_api_url; GitHub Enterprise: https://host/api/v3
    std::string token;                      // github_token; empty: no commit statuses are posted
    std::string public_url;                 // public_url: where people reach kilnd (target_url of statuses)
};

}  // namespace kiln::ci::github
