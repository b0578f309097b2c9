// Per-sandbox envd access tokens (E2B's `envdAccessToken`, sent back as X-Access-Token on every
// envd request): HMAC-SHA256 of the sandbox id under a key kept in the data dir, so a token
// survives a kilnd restart without a table, and one sandbox's token opens no other.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace kiln::daemon::e2b {

class AccessTokens {
public:
    // The key in `<data_dir>/e2b_access_key` (32 random bytes as hex, mode 0600), made on first
    // use. A file that is not the owner's alone is refused (base/secret_file.h).
    static Result<AccessTokens> open(const std::string& data_dir);
    // For tests: a given key.
    explicit AccessTokens(std::string key) : m_key(std::move(key)) {}

    std::string token_for(const std::string& sandbox_id) const;
    // Constant-time comparison: no timing tells how much of a guess matched.
    bool check(const std::string& sandbox_id, std::string_view presented) const;

private:
    std::string m_key;
};

}  // namespace kiln::daemon::e2b
