// The forms of a secret's value a job's log masks besides the value itself: a step that prints
// `base64 <<<$KEY` or `xxd -p` must not show the key either (docs/ci.md "Secrets").
#pragma once

#include <string>
#include <vector>

namespace kiln::ci {

// The value, its hex (lower and upper case), its base64 in the standard and the URL-safe
// alphabet with and without padding, and for each of the three offsets the value can have inside
// a longer base64 text (the 0, 1 or 2 bytes before it in its 3-byte group), the characters of
// that text that depend on the value alone. Longest first, so that a mask replaces the whole of
// a long form before a shorter one matches inside it. Forms shorter than 6 characters are left
// out (the value itself is kept when it has at least 3), since masking them would garble
// ordinary output.
std::vector<std::string> secret_forms(const std::string& value);

}  // namespace kiln::ci
