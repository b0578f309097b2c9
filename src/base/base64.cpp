// base64_encode (see base64.h).
#include "base/base64.h"

#include <cstdint>

namespace kiln {

std::string base64_encode(std::string_view bytes, Base64Alphabet alphabet, bool pad) {
    const char* digits = alphabet == Base64Alphabet::Standard
                             ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                             : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    auto at = [&](size_t k) { return uint32_t(uint8_t(bytes[k])); };
    size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        uint32_t v = at(i) << 16 | at(i + 1) << 8 | at(i + 2);
        for (int shift : {18, 12, 6, 0}) out += digits[(v >> shift) & 63];
    }
    const size_t rest = bytes.size() - i;
    if (rest == 0) return out;
    uint32_t v = at(i) << 16 | (rest == 2 ? at(i + 1) << 8 : 0);
    out += digits[(v >> 18) & 63];
    out += digits[(v >> 12) & 63];
    if (rest == 2) out += digits[(v >> 6) & 63];
    if (pad) out += rest == 1 ? "==" : "=";
    return out;
}

}  // namespace kiln
