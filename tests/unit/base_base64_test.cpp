// base64_decode: the strict decoder of the agent's input op, against base64_encode and bad input.
#include <gtest/gtest.h>

#include "base/base64.h"

using namespace kiln;

TEST(Base64, DecodeRoundTripsEveryLengthWithAndWithoutPadding) {
    std::string bytes;
    for (int i = 0; i < 70; ++i) {
        EXPECT_EQ(base64_decode(base64_encode(bytes)), bytes) << i;
        EXPECT_EQ(base64_decode(base64_encode(bytes, Base64Alphabet::Standard, false)), bytes) << i;
        bytes += static_cast<char>(i * 37);
    }
    EXPECT_EQ(base64_decode("aGVsbG8K"), "hello\n");
    EXPECT_EQ(base64_decode(""), "");
}

TEST(Base64, DecodeRefusesWhatIsNotCanonicalBase64) {
    for (const char* bad : {"a", "a===", "====", "ab=c", "aGVsbG8K\n", "aGV sbG8K", "-_-_", "ab==ab==", "aR==", "aGVsbG9="})
        EXPECT_FALSE(base64_decode(bad).has_value()) << bad;
}
