// TokenStore: creation, revocation and constant-time checking of bearer tokens (see token_store.h).
#include "daemon/auth/token_store.h"

#include <openssl/crypto.h>

#include <chrono>

#include "base/base64.h"
#include "base/db.h"
#include "base/random.h"
#include "base/sha256.h"

namespace kiln::daemon {
namespace {

bool valid_token_name(const std::string& name) {
    if (name.empty() || name.size() > 64) return false;
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

Error unauthorized() { return make_error(ErrorCode::Unauthorized, "missing, unknown or revoked bearer token"); }

}  // namespace

std::string base64url(const std::string& bytes) { return base64_encode(bytes, Base64Alphabet::UrlSafe, false); }

bool token_shaped(std::string_view token) {
    if (token.substr(0, 5) == kTokenPrefix) return token.size() >= 8 && token.size() <= 256;
    static const std::string_view e2b = kE2bTokenPrefix;
    if (token.size() != e2b.size() + kE2bTokenHexDigits || token.substr(0, e2b.size()) != e2b) return false;
    for (char c : token.substr(e2b.size()))
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

Result<NewToken> TokenStore::create(const TokenSpec& spec, TokenForm form) {
    const std::string& name = spec.name;
    if (!valid_token_name(name))
        return make_error(ErrorCode::InvalidArgument, "token name must be 1-64 characters of A-Z a-z 0-9 . _ -");
    if (spec.scopes == 0)
        return make_error(ErrorCode::InvalidArgument,
                          "a token needs at least one scope: admin, sandboxes, ci:submit, ci:trusted, ci:read");
    std::string token;
    if (form == TokenForm::E2b) token = kE2bTokenPrefix + TRY(random_hex(kE2bTokenHexDigits / 2));
    else token = kTokenPrefix + base64url(TRY(random_bytes(32)));
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
    int64_t id = TRY(m_store.insert_token(spec, sha256_hex(token), now));
    return NewToken{id, name, token, spec.scopes};
}

Status TokenStore::revoke(const std::string& id_or_name) {
    int n = TRY(m_store.revoke_token(id_or_name));
    if (n == 0) return make_error(ErrorCode::NotFound, "no live token with id or name '" + id_or_name + "'");
    return ok_status();
}

Result<Caller> TokenStore::authenticate(std::string_view bearer_token) {
    // Cheap shape checks first: anything that cannot be one of our tokens is not looked up.
    if (!token_shaped(bearer_token)) return unauthorized();
    return authenticate_hash(sha256_hex(std::string(bearer_token)));
}

Result<Caller> TokenStore::authenticate_hash(const std::string& hash) {
    auto found = m_store.find_token_by_hash(hash);
    if (!found.ok()) return store_error(found.error());  // a store that is down: 503, not 401
    if (!*found) return unauthorized();
    const TokenRecord& record = **found;
    // The lookup matched on the hash; compare the full hashes again in constant time so that no
    // index or collation behaviour can leak how close a guess came.
    if (record.sha256_hex.size() != hash.size() ||
        CRYPTO_memcmp(record.sha256_hex.data(), hash.data(), hash.size()) != 0)
        return unauthorized();
    if (record.revoked) return unauthorized();
    return Caller{record.id, record.name, record.scopes, with_defaults(record.quota, m_defaults)};
}

Result<Caller> TokenStore::caller_by_id(int64_t id) {
    auto found = m_store.find_token_by_id(id);
    if (!found.ok()) return make_error(ErrorCode::Internal, "token store: " + found.error().message);
    if (!*found || (*found)->revoked) return unauthorized();
    const TokenRecord& record = **found;
    return Caller{record.id, record.name, record.scopes, with_defaults(record.quota, m_defaults)};
}

}  // namespace kiln::daemon
