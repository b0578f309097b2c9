// A buffered exec's output on the host: each stream kept up to a cap (the rest counted and
// dropped), then encoded for the JSON answer so that its size stays bounded by the cap too.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::daemon::http {

// One stream (stdout or stderr) of a buffered exec. The agent is untrusted: whatever it sends,
// at most `cap` bytes are kept; the rest is only counted.
class CappedOutput {
public:
    explicit CappedOutput(size_t cap) : m_cap(cap) {}

    void append(std::string_view data);
    const std::string& kept() const { return m_kept; }
    uint64_t dropped() const { return m_dropped; }
    bool truncated() const { return m_dropped > 0; }

private:
    size_t m_cap;
    std::string m_kept;
    uint64_t m_dropped = 0;
};

// How a stream's bytes travel in JSON.
//   text:   a JSON string of the bytes as they are: valid UTF-8 whose JSON escaping takes at
//           most twice its size (what existing clients read);
//   base64: RFC 4648 base64 of the bytes: anything else (invalid UTF-8, or output heavy in
//           control characters such as NUL, which JSON escapes to 6 characters each); 4/3 of
//           the bytes. Either way the encoded stream is at most twice the bytes kept.
enum class OutputEncoding { Text, Base64 };

const char* encoding_name(OutputEncoding encoding);  // "utf-8" | "base64"
OutputEncoding choose_encoding(std::string_view bytes);

bool is_valid_utf8(std::string_view bytes);
// The length of `bytes` as the body of a JSON string (quotes not counted), as nlohmann::json
// writes it: \" \\ \b \f \n \r \t take 2, other control characters 6 (\u00XX), the rest 1.
size_t json_escaped_length(std::string_view bytes);
std::string base64_encode(std::string_view bytes);

}  // namespace kiln::daemon::http
