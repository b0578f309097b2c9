// Masking a job's secrets in what goes into its log (JobLog), on its own so that the fuzz target
// (tests/fuzz/log_mask_fuzz.cpp) reaches it without a log file.
#pragma once

#include <string>
#include <vector>

namespace kiln::ci {

// Values shorter than this are not masked: masking "a" would garble every line.
inline constexpr size_t kMinMaskedBytes = 3;

// `text` with every occurrence of each value replaced by "***", value by value in order. Values
// shorter than kMinMaskedBytes are skipped. Afterwards no value without a '*' occurs in the text.
std::string mask_secrets(std::string text, const std::vector<std::string>& values);

}  // namespace kiln::ci
