// TokenStore: bearer tokens kept as SHA-256 in the Store; the Authenticator kilnd's HTTP layer uses.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "daemon/auth/authenticator.h"
#include "daemon/store/store.h"

namespace kiln::daemon {

inline constexpr const char* kTokenPrefix = "kiln_";
// The second form of the same tokens: an E2B API key (docs/e2b.md). E2B's SDKs take keys shaped
// `e2b_` + 40 lowercase hex digits (the Python SDK checks it), so a Kiln token for them has it.
inline constexpr const char* kE2bTokenPrefix = "e2b_";
inline constexpr size_t kE2bTokenHexDigits = 40;

enum class TokenForm { Kiln, E2b };

struct NewToken {
    int64_t id = 0;
    std::string name;
    std::string token;  // shown once, never stored or logged
    ScopeSet scopes = 0;
};

class TokenStore final : public Authenticator {
public:
    // `defaults`: the limits of a token that has none of its own (config key token_quota).
    explicit TokenStore(Store& store, TokenQuota defaults = {}) : m_store(store), m_defaults(std::move(defaults)) {}

    // kiln_ + 43 base64url characters (32 random bytes), or with TokenForm::E2b e2b_ + 40 hex
    // digits (20 random bytes); either authenticates anywhere. Names: 1-64 of [A-Za-z0-9._-]; at
    // least one scope.
    Result<NewToken> create(const TokenSpec& spec, TokenForm form = TokenForm::Kiln);
    Result<std::vector<TokenRecord>> list() { return m_store.list_tokens(); }
    // By id or by name (every token of that name); not_found when nothing was revoked.
    Status revoke(const std::string& id_or_name);

    // Hashes the presented token, looks the hash up, and compares it again in constant time
    // (CRYPTO_memcmp) so a timing difference never tells how much of a token matched.
    Result<Caller> authenticate(std::string_view bearer_token) override;
    // The same for a token known by its SHA-256 (a dashboard session keeps only that): revoked or
    // unknown is unauthorized.
    Result<Caller> authenticate_hash(const std::string& sha256_hex);
    // The Caller of token `id` as the store has it now (scopes, quota): for a request another
    // host of the fleet forwarded, signed with the fleet secret (docs/fleet.md). Revoked or
    // unknown is unauthorized.
    Result<Caller> caller_by_id(int64_t id);

private:
    Store& m_store;
    TokenQuota m_defaults;
};

// True when `token` has the shape of one of the two forms (cheap; says nothing of validity).
bool token_shaped(std::string_view token);

// Base64url without padding.
std::string base64url(const std::string& bytes);

}  // namespace kiln::daemon
