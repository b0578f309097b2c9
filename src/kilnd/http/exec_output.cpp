// Capping and encoding of buffered exec output; see exec_output.h.
#include "kilnd/http/exec_output.h"

#include <algorithm>

#include "base/base64.h"

namespace kiln::daemon::http {

void CappedOutput::append(std::string_view data) {
    size_t room = m_cap - std::min(m_cap, m_kept.size());
    size_t keep = std::min(room, data.size());
    m_kept.append(data.substr(0, keep));
    m_dropped += data.size() - keep;
}

const char* encoding_name(OutputEncoding encoding) {
    switch (encoding) {
    case OutputEncoding::Text: return "utf-8";
    case OutputEncoding::Base64: return "base64";
    }
    return "base64";
}

bool is_valid_utf8(std::string_view s) {
    size_t i = 0;
    const size_t n = s.size();
    while (i < n) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n) return false;
        for (size_t k = 1; k < len; ++k) {
            unsigned char cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
        static constexpr uint32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

size_t json_escaped_length(std::string_view bytes) {
    size_t total = 0;
    for (char ch : bytes) {
        unsigned char c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': case '\\': case '\b': case '\f': case '\n': case '\r': case '\t': total += 2; break;
        default: total += c < 0x20 ? 6 : 1; break;
        }
    }
    return total;
}

OutputEncoding choose_encoding(std::string_view bytes) {
    if (!is_valid_utf8(bytes)) return OutputEncoding::Base64;
    // Quotes, backslashes and newlines cost 2 and are ordinary in text; only output heavy in
    // control characters (6 each) passes twice its size, and base64 is cheaper there.
    return json_escaped_length(bytes) <= 2 * bytes.size() ? OutputEncoding::Text : OutputEncoding::Base64;
}

std::string base64_encode(std::string_view bytes) { return kiln::base64_encode(bytes); }

}  // namespace kiln::daemon::http
