// RFC 4648 base64 encoding, in the standard or the URL-safe alphabet, with or without padding:
// one encoder for exec output, token strings and the forms of a CI secret that logs mask, and the
// strict decoder of the agent's input op. Its own library (kiln_base64) so the static agent has it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kiln {

enum class Base64Alphabet { Standard, UrlSafe };  // "+/" or "-_" for the last two digits

std::string base64_encode(std::string_view bytes, Base64Alphabet alphabet = Base64Alphabet::Standard, bool pad = true);

// Standard alphabet; padding optional, but a partial last quantum must be a valid one. Nothing on
// any other character (whitespace included) or a bad length.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace kiln
