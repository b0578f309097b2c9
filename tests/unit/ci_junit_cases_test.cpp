// read_junit_cases over real reports (the widget's runner's shape, pytest's nested suites) and
// hostile ones, and the reports a job keeps in its dir.
#include <gtest/gtest.h>

#include "ci/junit/junit_cases.h"
#include "daemon_test_dir.h"

using namespace kiln;
using namespace kiln::ci;

namespace {

constexpr const char* kReport = R"(<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="widget" tests="4">
    <testcase classname="test_widget.PriceTest" name="test_plain" time="0.001"/>
    <testcase classname="test_widget.PriceTest" name="test_discount" time="0.25">
      <failure message="AssertionError: 300 != 301" type="AssertionError">Traceback (most recent call last):
  File "test_widget.py", line 12
AssertionError: 300 != 301</failure>
      <system-out>printed &lt;here&gt;</system-out>
    </testcase>
    <testcase classname="c" name="broken"><error message="boom"/><failure message="second"/></testcase>
    <testcase classname="c" name="later" time="nan-ish"><skipped message="not today"/></testcase>
  </testsuite>
</testsuites>)";

TEST(JunitCases, EachCaseWithItsOutcomeMessageAndOutput) {
    auto cases = read_junit_cases(kReport);
    ASSERT_TRUE(cases.ok()) << cases.error().to_string();
    ASSERT_EQ(cases->size(), 4u);
    EXPECT_EQ((*cases)[0].outcome, JunitOutcome::Passed);
    EXPECT_EQ((*cases)[0].suite, "widget");
    EXPECT_DOUBLE_EQ((*cases)[0].time_seconds, 0.001);
    const JunitCase& failed = (*cases)[1];
    EXPECT_EQ(failed.outcome, JunitOutcome::Failure);
    EXPECT_EQ(failed.name, "test_discount");
    EXPECT_EQ(failed.classname, "test_widget.PriceTest");
    EXPECT_EQ(failed.message, "AssertionError: 300 != 301");
    EXPECT_EQ(failed.type, "AssertionError");
    EXPECT_NE(failed.output.find("line 12"), std::string::npos);
    EXPECT_NE(failed.output.find("--- stdout ---\nprinted <here>"), std::string::npos) << failed.output;
    EXPECT_EQ((*cases)[2].outcome, JunitOutcome::Error) << "the first of error/failure decides, as the summary counts";
    EXPECT_EQ((*cases)[2].message, "boom");
    EXPECT_EQ((*cases)[3].outcome, JunitOutcome::Skipped);
    EXPECT_EQ((*cases)[3].time_seconds, 0) << "a time that is not a number is 0, not a refusal";
}

TEST(JunitCases, HostileReportsAreRefusedOrBounded) {
    EXPECT_FALSE(read_junit_cases("<!DOCTYPE x [<!ENTITY a 'b'>]><testsuite>&a;</testsuite>").ok());
    EXPECT_FALSE(read_junit_cases("<html/>").ok());
    EXPECT_FALSE(read_junit_cases("<testsuite><testcase>").ok());
    EXPECT_FALSE(read_junit_cases("").ok());
    std::string deep = "<testsuite>";
    for (int i = 0; i < 100; ++i) deep += "<a>";
    EXPECT_FALSE(read_junit_cases(deep).ok());

    JunitCaseLimits limits;
    limits.max_cases = 3;
    limits.max_text_bytes = 10;
    std::string many = "<testsuite>";
    for (int i = 0; i < 10; ++i) many += "<testcase name='n" + std::to_string(i) + "'><failure message='" + std::string(100, 'm') + "'>" + std::string(100, 'o') + "</failure></testcase>";
    many += "</testsuite>";
    auto cut = read_junit_cases(many, limits);
    ASSERT_TRUE(cut.ok()) << cut.error().to_string();
    ASSERT_EQ(cut->size(), 3u);
    EXPECT_EQ((*cut)[0].message.size(), 10u);
    EXPECT_EQ((*cut)[0].output.size(), 10u);
}

TEST(JunitCases, AJobKeepsItsReportsAndTheirCasesAreReadBack) {
    test::TempDir dir;
    auto none = read_kept_junit_cases(dir.path());
    ASSERT_TRUE(none.ok());
    EXPECT_TRUE(none->empty());
    ASSERT_TRUE(keep_junit_report(dir.path(), "reports/junit.xml", kReport).ok());
    ASSERT_TRUE(keep_junit_report(dir.path(), "reports/junit.xml", kReport).ok()) << "the same bytes again: replaced";
    ASSERT_TRUE(keep_junit_report(dir.path(), "../other.xml", "<testsuite><testcase name='x'/></testsuite>").ok());
    ASSERT_TRUE(keep_junit_report(dir.path(), "bad.xml", "not xml").ok());
    auto cases = read_kept_junit_cases(dir.path());
    ASSERT_TRUE(cases.ok());
    EXPECT_EQ(cases->size(), 5u) << "4 + 1; a report that does not parse is skipped";
}

}  // namespace
