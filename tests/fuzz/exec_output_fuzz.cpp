// libFuzzer: a guest's exec output on the host (src/kilnd/http/exec_output.cpp). The agent is
// untrusted: any bytes, in any pieces, must stay within the cap, and the chosen encoding must carry
// exactly the bytes kept within twice their size.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kilnd/http/exec_output.h"

using namespace kiln::daemon::http;

namespace {

std::string base64_decode(const std::string& text) {
    static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    uint32_t bits = 0;
    int count = 0;
    for (char c : text) {
        if (c == '=') break;
        size_t v = alphabet.find(c);
        if (v == std::string::npos) std::abort();
        bits = (bits << 6) | uint32_t(v);
        count += 6;
        if (count >= 8) {
            count -= 8;
            out.push_back(char((bits >> count) & 0xff));
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    // The first byte picks the cap, the second how the rest is cut into appends.
    size_t cap = data[0];
    size_t piece = size_t(data[1] % 17) + 1;
    std::string_view bytes(reinterpret_cast<const char*>(data) + 2, size - 2);
    CappedOutput out(cap);
    for (size_t at = 0; at < bytes.size(); at += piece) out.append(bytes.substr(at, piece));
    if (out.kept().size() > cap) std::abort();
    if (out.kept().size() + out.dropped() != bytes.size()) std::abort();
    if (out.kept() != bytes.substr(0, out.kept().size())) std::abort();

    const std::string& kept = out.kept();
    if (choose_encoding(kept) == OutputEncoding::Text) {
        if (!is_valid_utf8(kept)) std::abort();
        std::string encoded = nlohmann::json(kept).dump();
        if (encoded.size() - 2 != json_escaped_length(kept)) std::abort();
        if (encoded.size() - 2 > 2 * kept.size()) std::abort();
    } else {
        std::string encoded = base64_encode(kept);
        if (base64_decode(encoded) != kept) std::abort();
        if (encoded.size() > 2 * kept.size() + 4) std::abort();
    }
    return 0;
}
