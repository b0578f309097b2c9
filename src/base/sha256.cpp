// SHA-256 through OpenSSL's EVP interface.
#include "base/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <memory>
#include <vector>

#include "base/errno_error.h"
#include "base/random.h"
#include "base/unique_fd.h"

namespace kiln {
namespace {

using Digest = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

Digest new_digest() {
    Digest ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
    return ctx;
}

std::string finish(Digest& ctx) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx.get(), out, &len);
    return to_hex(std::string(reinterpret_cast<char*>(out), len));
}

}  // namespace

std::string sha256_hex(const std::string& data) {
    auto ctx = new_digest();
    EVP_DigestUpdate(ctx.get(), data.data(), data.size());
    return finish(ctx);
}

Result<std::string> sha256_file_hex(const std::string& path, uint64_t max_bytes) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno_error("open " + path);
    auto ctx = new_digest();
    std::vector<char> buf(1 << 20);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = ::read(fd.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error("read " + path);
        if (n == 0) break;
        total += static_cast<uint64_t>(n);
        if (total > max_bytes) return make_error(ErrorCode::TooLarge, path + " is larger than expected");
        EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
    }
    return finish(ctx);
}

bool hmac_sha256(std::string_view key, std::string_view message, unsigned char out[32]) {
    unsigned int len = 0;
    unsigned char* r = HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
                            reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &len);
    return r != nullptr && len == 32;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
    unsigned char mac[32];
    if (!hmac_sha256(key, message, mac)) return "";
    return to_hex(std::string(reinterpret_cast<const char*>(mac), sizeof mac));
}

}  // namespace kiln
