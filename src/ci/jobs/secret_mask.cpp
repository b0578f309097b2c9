// mask_secrets (see secret_mask.h).
#include "ci/jobs/secret_mask.h"

#include <algorithm>

namespace kiln::ci {

std::string mask_secrets(std::string text, const std::vector<std::string>& values) {
    static const std::string kMask = "***";
    for (const auto& secret : values) {
        if (secret.size() < kMinMaskedBytes) continue;
        for (size_t pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos + kMask.size()))
            text.replace(pos, secret.size(), kMask);
    }
    return text;
}

size_t secret_start_at_end(std::string_view text, const std::vector<std::string>& values) {
    size_t longest = 0;
    for (const auto& secret : values) {
        if (secret.size() < kMinMaskedBytes) continue;
        // KMP's prefix function over the secret, then run over the text's last secret.size() - 1
        // bytes: where the run ends is the longest end of the text that starts the secret.
        std::vector<size_t> fail(secret.size(), 0);
        for (size_t i = 1, k = 0; i < secret.size(); ++i) {
            while (k > 0 && secret[i] != secret[k]) k = fail[k - 1];
            if (secret[i] == secret[k]) ++k;
            fail[i] = k;
        }
        std::string_view tail = text.substr(text.size() - std::min(text.size(), secret.size() - 1));
        size_t k = 0;
        for (char c : tail) {
            while (k > 0 && c != secret[k]) k = fail[k - 1];
            if (c == secret[k]) ++k;  // stays below secret.size(): the tail is shorter
        }
        longest = std::max(longest, k);
    }
    return longest;
}

std::string mask_chunk(std::string& held, std::string_view chunk, const std::vector<std::string>& values) {
    std::string text = mask_secrets(std::move(held) + std::string(chunk), values);
    size_t keep = secret_start_at_end(text, values);
    held = text.substr(text.size() - keep);
    text.resize(text.size() - keep);
    return text;
}

}  // namespace kiln::ci
