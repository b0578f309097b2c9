// The checkout's file list as the job's VM printed it (`find -print0`), with the caps that keep
// matching the pipeline's `junit` and `artifacts` globs cheap whatever tree the job made.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace kiln::ci {

struct ListingLimits {
    size_t max_files = 200000;  // names kept; the rest are left out
    size_t max_depth = 128;     // path segments; deeper names are left out
};

struct CheckoutListing {
    std::vector<std::string> files;  // relative names, without find's "./"
    size_t too_deep = 0;             // names left out for having more than max_depth segments
    size_t past_max_files = 0;       // names left out after the first max_files
    bool cut_short = false;          // the output ended mid-name (find's output passed its cap)

    // What the caps left out, for the job's log ("" when nothing was).
    std::string warning(const ListingLimits& limits) const;
};

// Splits find's NUL-separated names, dropping "./", and applies `limits`.
CheckoutListing parse_checkout_listing(const std::string& find_output, const ListingLimits& limits = {});

}  // namespace kiln::ci
