// Buffered exec output: the per-stream cap and the encoding that keeps the JSON answer bounded.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kilnd/http/exec_output.h"

using namespace kiln::daemon::http;

TEST(CappedOutput, KeepsUpToTheCapAndCountsTheRest) {
    CappedOutput out(10);
    out.append("12345");
    out.append("67890abc");
    out.append("");
    out.append("defg");
    EXPECT_EQ(out.kept(), "1234567890");
    EXPECT_EQ(out.dropped(), 7u);
    EXPECT_TRUE(out.truncated());

    CappedOutput exact(3);
    exact.append("abc");
    EXPECT_EQ(exact.kept(), "abc");
    EXPECT_FALSE(exact.truncated());
}

TEST(ExecOutputEncoding, Base64MatchesRfc4648) {
    // RFC 4648, section 10.
    EXPECT_EQ(base64_encode(""), "");
    EXPECT_EQ(base64_encode("f"), "Zg==");
    EXPECT_EQ(base64_encode("fo"), "Zm8=");
    EXPECT_EQ(base64_encode("foo"), "Zm9v");
    EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
    EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
    EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
    EXPECT_EQ(base64_encode(std::string("\0\xff\xfe", 3)), "AP/+");
}

TEST(ExecOutputEncoding, Utf8Validity) {
    EXPECT_TRUE(is_valid_utf8(""));
    EXPECT_TRUE(is_valid_utf8("plain ascii\n"));
    EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    EXPECT_FALSE(is_valid_utf8("a\xff" "b"));
    EXPECT_FALSE(is_valid_utf8("\xc3"));              // cut short
    EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
    EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // a UTF-16 surrogate
    EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
    EXPECT_FALSE(is_valid_utf8("\x80"));              // a lone continuation byte
}

TEST(ExecOutputEncoding, EscapedLengthIsWhatTheJsonLibraryWrites) {
    std::string all;
    for (int c = 0; c < 128; ++c) all += static_cast<char>(c);
    all += "caf\xc3\xa9";
    for (const std::string& s : {std::string(), std::string("a\"b\\c\n\t\r\b\f"), std::string(5, '\0'), all}) {
        size_t quoted = nlohmann::json(s).dump().size();
        EXPECT_EQ(json_escaped_length(s), quoted - 2) << nlohmann::json(s).dump();
    }
}

TEST(ExecOutputEncoding, TextStaysTextBinaryAndControlHeavyOutputIsBase64) {
    EXPECT_EQ(choose_encoding(""), OutputEncoding::Text);
    EXPECT_EQ(choose_encoding("hello\n"), OutputEncoding::Text);
    EXPECT_EQ(choose_encoding(R"({"a":"b","c":["d","e"]})" "\n"), OutputEncoding::Text);  // quotes cost 2, fine
    EXPECT_EQ(choose_encoding("\x1b[31mred\x1b[0m and more words after it\n"), OutputEncoding::Text);
    EXPECT_EQ(choose_encoding("a\xff" "b"), OutputEncoding::Base64);
    EXPECT_EQ(choose_encoding(std::string(1000, '\0')), OutputEncoding::Base64);
    EXPECT_STREQ(encoding_name(OutputEncoding::Text), "utf-8");
    EXPECT_STREQ(encoding_name(OutputEncoding::Base64), "base64");
}

TEST(ExecOutputEncoding, TheEncodedStreamIsAtMostTwiceTheBytes) {
    // Whatever the bytes, the JSON string of the chosen encoding stays within 2x (+ padding).
    std::string samples[] = {std::string(4096, '\0'), std::string(4096, '"'), std::string(4096, '\n'),
                             std::string(4096, '\x01'), std::string(4096, '\xff'), std::string(4095, 'x') + '\x01'};
    for (const auto& s : samples) {
        std::string encoded = choose_encoding(s) == OutputEncoding::Text ? s : base64_encode(s);
        EXPECT_LE(nlohmann::json(encoded).dump().size() - 2, 2 * s.size() + 4);
    }
}
