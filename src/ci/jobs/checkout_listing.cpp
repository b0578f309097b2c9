// parse_checkout_listing: find's output, capped (see checkout_listing.h).
#include "ci/jobs/checkout_listing.h"

#include <algorithm>

namespace kiln::ci {

CheckoutListing parse_checkout_listing(const std::string& find_output, const ListingLimits& limits) {
    CheckoutListing out;
    for (size_t pos = 0; pos < find_output.size();) {
        size_t end = find_output.find('\0', pos);
        if (end == std::string::npos) {  // cut off by the output cap: not a whole name
            out.cut_short = true;
            break;
        }
        std::string_view name(find_output.data() + pos, end - pos);
        pos = end + 1;
        if (name.rfind("./", 0) == 0) name.remove_prefix(2);
        if (name.empty()) continue;
        // Segments as glob_match counts them (empty ones between "//" do not count).
        size_t depth = 0;
        for (size_t i = 0; i < name.size(); ++i)
            if (name[i] != '/' && (i == 0 || name[i - 1] == '/')) ++depth;
        if (depth > limits.max_depth) {
            ++out.too_deep;
            continue;
        }
        if (out.files.size() >= limits.max_files) {
            ++out.past_max_files;
            continue;
        }
        out.files.emplace_back(name);
    }
    return out;
}

std::string CheckoutListing::warning(const ListingLimits& limits) const {
    std::string parts;
    auto add = [&](const std::string& part) { parts += (parts.empty() ? "" : "; ") + part; };
    if (too_deep)
        add(std::to_string(too_deep) + " files deeper than " + std::to_string(limits.max_depth) + " folders were skipped");
    if (past_max_files)
        add(std::to_string(past_max_files) + " files past the first " + std::to_string(limits.max_files) + " were skipped");
    if (cut_short) add("the listing passed its size cap and was cut short");
    if (parts.empty()) return parts;
    return "the checkout's listing for junit and artifacts globs was capped: " + parts;
}

}  // namespace kiln::ci
