// mask_secrets (see secret_mask.h).
#include "ci/jobs/secret_mask.h"

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

}  // namespace kiln::ci
