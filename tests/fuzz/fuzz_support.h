// What the libFuzzer targets share: an invariant check that libFuzzer reports as a crash, and
// splitting one input into its parts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>

namespace kiln::fuzz {

// A broken invariant: abort, which libFuzzer reports with the input that did it.
inline void check(bool condition) {
    if (!condition) std::abort();
}

inline std::string as_string(const uint8_t* data, size_t size) { return std::string(reinterpret_cast<const char*>(data), size); }

// The input before the first `separator` and after it ("" when there is none).
inline std::pair<std::string, std::string> split_once(const std::string& input, const std::string& separator) {
    size_t at = input.find(separator);
    if (at == std::string::npos) return {input, std::string()};
    return {input.substr(0, at), input.substr(at + separator.size())};
}

}  // namespace kiln::fuzz
