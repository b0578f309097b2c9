// The test cases of a JUnit XML report, one by one (what the dashboard lists: failures first, each
// with its message and output), read from hostile bytes like read_junit_summary (junit_summary.h).
// Also where a job keeps the reports it read, so the cases can be listed after the VM is gone.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "ci/junit/junit_summary.h"

namespace kiln::ci {

enum class JunitOutcome { Passed, Failure, Error, Skipped };
const char* junit_outcome_name(JunitOutcome outcome);

struct JunitCase {
    std::string suite;      // the enclosing <testsuite>'s name
    std::string classname;
    std::string name;
    double time_seconds = 0;
    JunitOutcome outcome = JunitOutcome::Passed;
    std::string message;    // the <failure>/<error>/<skipped> message attribute
    std::string type;       // and its type attribute
    // The failure's text, then <system-out> and <system-err>, each cut at max_text_bytes.
    std::string output;
};

struct JunitCaseLimits {
    JunitLimits report;
    std::size_t max_cases = 100000;          // cases beyond are not read
    std::size_t max_text_bytes = 64 * 1024;  // per case, of message and of output
};

// Every <testcase> of a report, in document order. Refused as read_junit_summary refuses.
Result<std::vector<JunitCase>> read_junit_cases(std::string_view xml, const JunitCaseLimits& limits = {});

// <job_dir>/junit: a job's copies of the reports it read (job_attempt.cpp keeps each one it read).
std::string junit_reports_dir(const std::string& job_dir);
// Keeps one report: named after its path in the checkout and its bytes' hash, so a shard's report
// of the same path is kept beside the others' and a retried attempt's identical one replaces it.
Status keep_junit_report(const std::string& job_dir, const std::string& report_path, std::string_view xml);
// The cases of every kept report of a job (none kept: empty).
Result<std::vector<JunitCase>> read_kept_junit_cases(const std::string& job_dir, const JunitCaseLimits& limits = {});

}  // namespace kiln::ci
