// libFuzzer target: masking a job's secrets in its log (src/ci/jobs/secret_mask.cpp), whole and
// as a stream of chunks (a step's output arrives as each read of its pipe gave it). Input:
// secrets separated by '\n' up to an empty line, then the text, cut into chunks at each '\x01'.
// Checks, for the whole text and for the chunks: no secret of at least kMinMaskedBytes without a
// '*' is left (a '*' secret may be recreated by the "***" that replaces another), text without
// any secret comes back unchanged, and with one secret the chunks give what the whole text gives.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "ci/jobs/secret_mask.h"

using namespace kiln::ci;
using kiln::fuzz::check;

namespace {

std::vector<std::string> split_all(const std::string& text, char separator) {
    std::vector<std::string> parts;
    for (size_t pos = 0; pos <= text.size();) {
        size_t end = text.find(separator, pos);
        if (end == std::string::npos) end = text.size();
        parts.push_back(text.substr(pos, end - pos));
        pos = end + 1;
    }
    return parts;
}

void check_masked(const std::string& masked, const std::string& text, const std::vector<std::string>& secrets) {
    bool any_present = false;
    for (const auto& s : secrets) {
        if (s.size() < kMinMaskedBytes) continue;
        any_present = any_present || text.find(s) != std::string::npos;
        if (s.find('*') == std::string::npos) check(masked.find(s) == std::string::npos);
    }
    if (!any_present) check(masked == text);
    check(masked.size() <= text.size() + 3 * (text.size() / kMinMaskedBytes + 1));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto [head, cut_text] = kiln::fuzz::split_once(kiln::fuzz::as_string(data, size), "\n\n");
    const std::vector<std::string> secrets = split_all(head, '\n');
    const std::vector<std::string> chunks = split_all(cut_text, '\x01');
    std::string text;
    for (const auto& c : chunks) text += c;

    std::string masked = mask_secrets(text, secrets);
    check_masked(masked, text, secrets);

    std::string streamed, held;
    for (const auto& c : chunks) {
        streamed += mask_chunk(held, c, secrets);
        check(held.size() < 64 * 1024);  // never more than a secret's length
    }
    streamed += held;
    check_masked(streamed, text, secrets);
    if (secrets.size() == 1) check(streamed == masked);
    return 0;
}
