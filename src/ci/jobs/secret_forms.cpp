// The masked forms of a secret (see secret_forms.h).
#include "ci/jobs/secret_forms.h"

#include <algorithm>
#include <set>

namespace kiln::ci {
namespace {

constexpr const char* kStandard = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr const char* kUrlSafe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr size_t kMinForm = 6;

std::string base64(const std::string& data, const char* alphabet, bool pad) {
    std::string out;
    size_t i = 0;
    for (; i + 3 <= data.size(); i += 3) {
        uint32_t n = (uint32_t(uint8_t(data[i])) << 16) | (uint32_t(uint8_t(data[i + 1])) << 8) | uint8_t(data[i + 2]);
        for (int shift = 18; shift >= 0; shift -= 6) out += alphabet[(n >> shift) & 63];
    }
    size_t rest = data.size() - i;
    if (rest > 0) {
        uint32_t n = uint32_t(uint8_t(data[i])) << 16;
        if (rest == 2) n |= uint32_t(uint8_t(data[i + 1])) << 8;
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        if (rest == 2) out += alphabet[(n >> 6) & 63];
        if (pad) out += rest == 1 ? "==" : "=";
    }
    return out;
}

std::string hex(const std::string& data, const char* digits) {
    std::string out;
    for (unsigned char c : data) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

}  // namespace

std::vector<std::string> secret_forms(const std::string& value) {
    std::set<std::string> forms;
    if (value.size() >= 3) forms.insert(value);
    auto add = [&forms](std::string form) {
        if (form.size() >= kMinForm) forms.insert(std::move(form));
    };
    add(hex(value, "0123456789abcdef"));
    add(hex(value, "0123456789ABCDEF"));
    for (const char* alphabet : {kStandard, kUrlSafe}) {
        add(base64(value, alphabet, true));
        add(base64(value, alphabet, false));
        // With k bytes before the value in its group, character i of the encoding holds bits
        // [6i, 6i+6) of the stream: it depends on the value alone from the first character past
        // the k bytes (ceil(8k/6)) to the last one whose bits all lie within the value
        // (floor(8(k+n)/6) - 1); the ones beyond also hold the bytes after it.
        for (size_t k = 0; k < 3; ++k) {
            std::string encoded = base64(std::string(k, '\0') + value, alphabet, false);
            size_t first = (8 * k + 5) / 6;
            size_t end = 8 * (k + value.size()) / 6;
            if (end > first) add(encoded.substr(first, end - first));
        }
    }
    std::vector<std::string> out(forms.begin(), forms.end());
    std::stable_sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    return out;
}

}  // namespace kiln::ci
