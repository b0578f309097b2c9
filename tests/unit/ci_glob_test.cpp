// The CI glob matcher against hostile patterns and trees: the pathological `**/a/**/a/.../**/b`
// case is fast, random small inputs agree with a brute-force reference (the old recursive search,
// which defines the semantics), the comparison budget cuts matching short, and the checkout
// listing's caps leave out what they say.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "ci/jobs/checkout_listing.h"
#include "ci/jobs/glob_match.h"
#include "../glob_reference.h"

namespace kiln::ci {
namespace {

double elapsed_ms(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

TEST(CiGlobLinear, PathologicalDoubleStarsFinishInMilliseconds) {
    // 100 `**/a` pairs (just under the pipeline's 512-byte glob limit) then `b`, against a path
    // of 64 `a` folders: the old search tried C(64+100, 100) splits, which never ends.
    std::string pattern;
    for (int i = 0; i < 100; ++i) pattern += "**/a/";
    pattern += "**/b";
    ASSERT_LE(pattern.size(), 512u);
    std::string path;
    for (int i = 0; i < 64; ++i) path += "a/";
    path += "c";
    auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(glob_match(pattern, path));
    EXPECT_FALSE(glob_match(pattern, path.substr(0, path.size() - 1) + "b"));  // 64 `a` < the 100 required
    std::string deep;
    for (int i = 0; i < 100; ++i) deep += "a/x/";
    EXPECT_TRUE(glob_match(pattern, deep + "b"));
    // Generous for a loaded 2-core machine under ASan, yet far below what backtracking takes
    // (it does not finish for hours).
    EXPECT_LT(elapsed_ms(start), 250.0);
}

TEST(CiGlobLinear, AgreesWithTheBruteForceReference) {
    std::mt19937 rng(15);
    // Plain names (compared without fnmatch), escapes and an unterminated bracket among them.
    const std::vector<std::string> pattern_parts = {"**", "*", "a", "b", "?", "a*", "*b", "[ab]", "[!a]", ".", "",
                                                    "\\a", "\\*", "[a", "ab"};
    const std::vector<std::string> path_parts = {"a", "b", "ab", "ba", "c", ".", "", ".a", "*", "[a"};
    auto pick = [&](const std::vector<std::string>& from) { return from[rng() % from.size()]; };
    int matches = 0;
    for (int i = 0; i < 20000; ++i) {
        std::string pattern, path;
        for (size_t n = rng() % 6; n > 0; --n) pattern += pick(pattern_parts) + (n > 1 ? "/" : "");
        for (size_t n = rng() % 6; n > 0; --n) path += pick(path_parts) + (n > 1 ? "/" : "");
        if (rng() % 4 == 0) path = "/" + path;
        bool expected = kiln::testing::glob_reference(pattern, path);
        ASSERT_EQ(glob_match(pattern, path), expected) << "pattern '" << pattern << "' path '" << path << "'";
        matches += expected;
    }
    EXPECT_GT(matches, 1000);  // the inputs exercise matches as well as mismatches
}

TEST(CiGlobLinear, FilterStopsWhenTheBudgetRunsOut) {
    std::vector<std::string> paths;
    for (int i = 0; i < 100; ++i) paths.push_back("d/f" + std::to_string(i) + ".xml");
    auto all = glob_filter({"d/*.xml"}, paths);
    EXPECT_TRUE(all.complete);
    EXPECT_EQ(all.paths.size(), 100u);
    // Two comparisons per path ("d", then "*.xml"): 50 comparisons cover 25 paths.
    auto cut = glob_filter({"d/*.xml"}, paths, 50);
    EXPECT_FALSE(cut.complete);
    EXPECT_EQ(cut.paths.size(), 25u);
    EXPECT_EQ(cut.paths.front(), "d/f0.xml");
}

TEST(CiCheckoutListing, CapsDepthAndCountAndSaySo) {
    std::string out;
    for (int i = 0; i < 5; ++i) out += "./r" + std::to_string(i) + ".xml" + std::string(1, '\0');
    out += "./a/b/c/d.xml" + std::string(1, '\0');  // 4 segments
    out += "./a//b/c.xml" + std::string(1, '\0');   // 3: an empty segment does not count
    out += "./partial";                             // no NUL: cut off by the output cap
    ListingLimits limits;
    limits.max_depth = 3;
    limits.max_files = 4;
    CheckoutListing listing = parse_checkout_listing(out, limits);
    EXPECT_EQ(listing.files, (std::vector<std::string>{"r0.xml", "r1.xml", "r2.xml", "r3.xml"}));
    EXPECT_EQ(listing.too_deep, 1u);
    EXPECT_EQ(listing.past_max_files, 2u);  // r4.xml and a//b/c.xml
    EXPECT_TRUE(listing.cut_short);
    std::string warning = listing.warning(limits);
    EXPECT_NE(warning.find("1 files deeper than 3 folders"), std::string::npos) << warning;
    EXPECT_NE(warning.find("2 files past the first 4"), std::string::npos) << warning;
    EXPECT_NE(warning.find("cut short"), std::string::npos) << warning;

    CheckoutListing plain = parse_checkout_listing(std::string("./x") + '\0' + "y" + '\0');
    EXPECT_EQ(plain.files, (std::vector<std::string>{"x", "y"}));
    EXPECT_EQ(plain.warning(ListingLimits{}), "");
}

}  // namespace
}  // namespace kiln::ci
