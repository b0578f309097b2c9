// libFuzzer target: masking a job's secrets in its log (src/ci/jobs/secret_mask.cpp). Input:
// secrets separated by '\n' up to an empty line, then the text. Checks: no secret of at least
// kMinMaskedBytes without a '*' is left in the text (a '*' secret may be recreated by the "***"
// that replaces another), the text never grows by more than the masks, and text without any
// secret comes back unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "ci/jobs/secret_mask.h"

using namespace kiln::ci;
using kiln::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto [head, text] = kiln::fuzz::split_once(kiln::fuzz::as_string(data, size), "\n\n");
    std::vector<std::string> secrets;
    for (size_t pos = 0; pos <= head.size();) {
        size_t nl = head.find('\n', pos);
        if (nl == std::string::npos) nl = head.size();
        secrets.push_back(head.substr(pos, nl - pos));
        pos = nl + 1;
    }
    std::string masked = mask_secrets(text, secrets);
    bool any_present = false;
    for (const auto& s : secrets) {
        if (s.size() < kMinMaskedBytes) continue;
        any_present = any_present || text.find(s) != std::string::npos;
        if (s.find('*') == std::string::npos) check(masked.find(s) == std::string::npos);
    }
    if (!any_present) check(masked == text);
    check(masked.size() <= text.size() + 3 * (text.size() / kMinMaskedBytes + 1));
    return 0;
}
