// The masked forms of a secret (see secret_forms.h).
#include "ci/jobs/secret_forms.h"

#include <algorithm>
#include <set>

#include "base/base64.h"

namespace kiln::ci {
namespace {

constexpr size_t kMinForm = 6;

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
    for (Base64Alphabet alphabet : {Base64Alphabet::Standard, Base64Alphabet::UrlSafe}) {
        add(base64_encode(value, alphabet, true));
        add(base64_encode(value, alphabet, false));
        // With k bytes before the value in its group, character i of the encoding holds bits
        // [6i, 6i+6) of the stream: it depends on the value alone from the first character past
        // the k bytes (ceil(8k/6)) to the last one whose bits all lie within the value
        // (floor(8(k+n)/6) - 1); the ones beyond also hold the bytes after it.
        for (size_t k = 0; k < 3; ++k) {
            std::string encoded = base64_encode(std::string(k, '\0') + value, alphabet, false);
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
