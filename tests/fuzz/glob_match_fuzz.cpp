// libFuzzer target: the CI glob matcher (src/ci/jobs/glob_match.cpp) and the checkout listing it
// runs over (checkout_listing.cpp). Input: a pattern, '\n', then a path (or a find -print0
// listing). Checks: glob_match agrees with the old recursive matcher (the reference semantics)
// wherever that one is cheap enough to run, glob_filter agrees with glob_match and honours its
// budget, and the listing's caps hold. A slow input is a libFuzzer timeout: the point of item 9.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "ci/jobs/checkout_listing.h"
#include "ci/jobs/glob_match.h"
#include "../glob_reference.h"

using namespace kiln::ci;
using namespace kiln::testing;
using kiln::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto [pattern, rest] = kiln::fuzz::split_once(kiln::fuzz::as_string(data, size), "\n");
    // fnmatch stops at NUL: the real inputs (YAML strings, find's names) cannot hold one either.
    std::string path = rest.substr(0, rest.find('\0'));
    pattern = pattern.substr(0, pattern.find('\0'));

    bool matched = glob_match(pattern, path);
    std::vector<std::string> pat = glob_reference_split(pattern), segments = glob_reference_split(path);
    size_t stars = 0;
    for (const auto& p : pat) stars += p == "**";
    if (stars <= 4 && segments.size() <= 12) check(matched == glob_reference_match(pat, 0, segments, 0));

    CheckoutListing listing = parse_checkout_listing(rest, ListingLimits{50, 6});
    check(listing.files.size() <= 50);
    for (const auto& f : listing.files) check(!f.empty() && glob_reference_split(f).size() <= 6);
    check(listing.warning(ListingLimits{50, 6}).empty() == (!listing.too_deep && !listing.past_max_files && !listing.cut_short));

    auto all = glob_filter({pattern}, listing.files);
    check(all.complete);
    size_t expected = 0;
    for (const auto& f : listing.files) expected += glob_match(pattern, f);
    check(all.paths.size() == expected);
    auto cut = glob_filter({pattern}, listing.files, 10);
    check(cut.paths.size() <= all.paths.size());
    for (size_t i = 0; i < cut.paths.size(); ++i) check(cut.paths[i] == all.paths[i]);
    return 0;
}
