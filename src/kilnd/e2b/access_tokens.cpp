// Per-sandbox envd access tokens; see access_tokens.h.
#include "kilnd/e2b/access_tokens.h"

#include <openssl/crypto.h>

#include "base/file_util.h"
#include "base/random.h"
#include "base/secret_file.h"
#include "base/sha256.h"

namespace kiln::daemon::e2b {

namespace {
constexpr const char* kKeyFile = "e2b_access_key";
constexpr size_t kKeyBytes = 32;
}  // namespace

Result<AccessTokens> AccessTokens::open(const std::string& data_dir) {
    const std::string path = data_dir + "/" + kKeyFile;
    if (!path_exists(path)) {
        std::string key = TRY(random_hex(kKeyBytes));
        TRY(write_file_atomic(path, key + "\n", 0600));
    }
    std::string key = TRY(read_secret_file(path));
    if (key.size() < 2 * kKeyBytes)
        return make_error(ErrorCode::InvalidArgument, path + " holds no key of " + std::to_string(2 * kKeyBytes) +
                                                          " hex digits; remove it and kilnd makes a new one (every "
                                                          "sandbox's envd access token changes then)");
    return AccessTokens(std::move(key));
}

std::string AccessTokens::token_for(const std::string& sandbox_id) const {
    return hmac_sha256_hex(m_key, "envd-access:" + sandbox_id);
}

bool AccessTokens::check(const std::string& sandbox_id, std::string_view presented) const {
    const std::string expected = token_for(sandbox_id);
    return presented.size() == expected.size() && CRYPTO_memcmp(presented.data(), expected.data(), expected.size()) == 0;
}

}  // namespace kiln::daemon::e2b
