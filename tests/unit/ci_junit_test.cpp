// Unit tests for the JUnit XML summary reader: real report shapes, counting rules, and hostile XML.
#include <gtest/gtest.h>

#include "ci/junit/junit_summary.h"

using namespace kiln;
using namespace kiln::ci;

namespace {

JunitSummary counts(std::uint64_t tests, std::uint64_t failures, std::uint64_t errors, std::uint64_t skipped) {
    return JunitSummary{tests, failures, errors, skipped};
}

JunitSummary read_ok(const std::string& xml) {
    auto summary = read_junit_summary(xml);
    EXPECT_TRUE(summary.ok()) << summary.error().to_string();
    return summary.ok() ? *summary : JunitSummary{};
}

std::string read_error(const std::string& xml, const JunitLimits& limits = {}) {
    auto summary = read_junit_summary(xml, limits);
    EXPECT_FALSE(summary.ok()) << xml;
    if (summary.ok()) return "";
    EXPECT_EQ(summary.error().code, ErrorCode::InvalidJunit);
    return summary.error().message;
}

}  // namespace

TEST(Junit, PytestReport) {
    // As pytest 7 writes it (--junitxml), trimmed.
    const char* xml = R"(<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="0.1">
<testcase classname="t" name="test_ok" time="0.001" />
<testcase classname="t" name="test_ok2" time="0.001"></testcase>
<testcase classname="t" name="test_fail" time="0.001"><failure message="assert 1 == 2">assert 1 == 2</failure></testcase>
<testcase classname="t" name="test_err" time="0.001"><error message="fixture failed">boom &amp; more</error></testcase>
<testcase classname="t" name="test_skip" time="0.001"><skipped type="pytest.skip" message="no">no</skipped></testcase>
</testsuite></testsuites>)";
    EXPECT_EQ(read_ok(xml), counts(5, 1, 1, 1));
    EXPECT_FALSE(read_ok(xml).passed());
}

TEST(Junit, JestJunitReportWithNestedSuitesIsNotDoubleCounted) {
    const char* xml = R"(<testsuites name="jest tests" tests="3" failures="1" errors="0">
  <testsuite name="a" tests="2" failures="1" errors="0" skipped="0">
    <testsuite name="a.inner" tests="2" failures="1">
      <testcase name="x"/><testcase name="y"><failure>expected</failure><failure>again</failure></testcase>
    </testsuite>
  </testsuite>
  <testsuite name="b" tests="1"><testcase name="z"><system-out>hi</system-out></testcase></testsuite>
</testsuites>)";
    EXPECT_EQ(read_ok(xml), counts(3, 1, 0, 0));
}

TEST(Junit, FirstOutcomeChildDecidesATestcase) {
    EXPECT_EQ(read_ok("<testsuite><testcase><error/><failure/></testcase><testcase><skipped/><failure/></testcase></testsuite>"),
              counts(2, 0, 1, 1));
    // Only direct children count: a <failure> deeper inside (e.g. in properties) is not an outcome.
    EXPECT_EQ(read_ok("<testsuite><testcase><properties><failure/></properties></testcase></testsuite>"),
              counts(1, 0, 0, 0));
}

TEST(Junit, SummaryOnlyReportsUseAttributes) {
    EXPECT_EQ(read_ok(R"(<testsuite tests="10" failures="2" errors="1" skipped="3"/>)"), counts(10, 2, 1, 3));
    EXPECT_EQ(read_ok(R"(<testsuite tests="4" disabled="2"/>)"), counts(4, 0, 0, 2));
    EXPECT_EQ(read_ok(R"(<testsuites tests="7" failures="1"><testsuite tests="99"/></testsuites>)"), counts(7, 1, 0, 0));
    // A root without counts: its <testsuite> children are summed.
    EXPECT_EQ(read_ok(R"(<testsuites><testsuite tests="2" failures="1"/><testsuite tests="3" skipped="1"/></testsuites>)"),
              counts(5, 1, 0, 1));
    EXPECT_EQ(read_ok("<testsuites/>"), counts(0, 0, 0, 0));
    EXPECT_TRUE(read_ok("<testsuites/>").passed());
}

TEST(Junit, BadCountsAreErrorsWithTheirLine) {
    EXPECT_EQ(read_error("<testsuites>\n  <testsuite tests=\"-1\"/>\n</testsuites>"),
              "line 2, column 3: attribute tests=\"-1\" is not a whole number of tests");
    EXPECT_EQ(read_error(R"(<testsuite tests="5" failures="1.5"/>)"),
              "line 1, column 1: attribute failures=\"1.5\" is not a whole number of tests");
    EXPECT_NE(read_error(R"(<testsuite tests="99999999999999999999"/>)").find("not a whole number"), std::string::npos);
    // With testcases present, the counts come from them and a bad attribute does not matter.
    EXPECT_EQ(read_ok(R"(<testsuite tests="lots"><testcase/></testsuite>)"), counts(1, 0, 0, 0));
}

TEST(Junit, SumsSaturate) {
    JunitSummary total = counts(UINT64_MAX - 1, 0, 0, 0);
    total += counts(5, 1, 0, 0);
    EXPECT_EQ(total, counts(UINT64_MAX, 1, 0, 0));
}

TEST(JunitHostile, NotAReport) {
    EXPECT_EQ(read_error("<html><body/></html>"),
              "line 1, column 1: the root element is <html>, not <testsuites> or <testsuite>");
    EXPECT_EQ(read_error(""), "line 1, column 1: not well-formed XML (no element found)");
    EXPECT_EQ(read_error("<testsuite>\n<testcase>\n</testsuite>"),
              "line 3, column 3: not well-formed XML (mismatched tag)");
    EXPECT_NE(read_error("\x89PNG\r\n\x1a\n").find("not well-formed XML"), std::string::npos);
}

TEST(JunitHostile, DoctypeAndEntitiesAreRefused) {
    const char* laughs = R"(<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<testsuite name="&lol2;"/>)";
    EXPECT_EQ(read_error(laughs), "line 2, column 16: a DOCTYPE is not allowed in a JUnit report");
    const char* external = R"(<!DOCTYPE t SYSTEM "file:///etc/passwd"><testsuite tests="&xxe;"/>)";
    EXPECT_EQ(read_error(external), "line 1, column 40: a DOCTYPE is not allowed in a JUnit report");
    // Without a DTD an entity is just undefined.
    EXPECT_NE(read_error(R"(<testsuite name="&xxe;"/>)").find("undefined entity"), std::string::npos);
}

TEST(JunitHostile, DepthAndSizeAreBounded) {
    std::string deep = "<testsuite>";
    for (int i = 0; i < 100; ++i) deep += "<a>";
    EXPECT_EQ(read_error(deep), "line 1, column 201: elements nested deeper than 64");
    JunitLimits small;
    small.max_bytes = 16;
    EXPECT_EQ(read_error("<testsuite tests=\"1\"/>", small), "the report is 22 bytes; the limit is 16");
}
