// Masking a job's secrets in what goes into its log (JobLog), on its own so that the fuzz target
// (tests/fuzz/log_mask_fuzz.cpp) reaches it without a log file.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kiln::ci {

// Values shorter than this are not masked: masking "a" would garble every line.
inline constexpr size_t kMinMaskedBytes = 3;

// `text` with every occurrence of each value replaced by "***", value by value in order. Values
// shorter than kMinMaskedBytes are skipped. Afterwards no value without a '*' occurs in the text.
std::string mask_secrets(std::string text, const std::vector<std::string>& values);

// The length of the longest end of `text` that is the start (shorter than the whole) of one of
// `values`: what may turn out to be a secret once the next bytes arrive.
size_t secret_start_at_end(std::string_view text, const std::vector<std::string>& values);

// Masking a stream that arrives in chunks (a step's output, as each read of its pipe gave it), so
// a secret split between two chunks is masked too: masks `held` + `chunk`, returns what can be
// written now and leaves in `held` the end that may be the start of a secret (write it when the
// stream ends). Without values, everything is written at once.
std::string mask_chunk(std::string& held, std::string_view chunk, const std::vector<std::string>& values);

}  // namespace kiln::ci
