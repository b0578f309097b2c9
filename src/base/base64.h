// RFC 4648 base64 encoding, in the standard or the URL-safe alphabet, with or without padding:
// one encoder for exec output, token strings and the forms of a CI secret that logs mask.
#pragma once

#include <string>
#include <string_view>

namespace kiln {

enum class Base64Alphabet { Standard, UrlSafe };  // "+/" or "-_" for the last two digits

std::string base64_encode(std::string_view bytes, Base64Alphabet alphabet = Base64Alphabet::Standard, bool pad = true);

}  // namespace kiln
