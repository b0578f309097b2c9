// The job lines `kiln ci run` and `kiln ci pipeline` print, from the API's pipeline JSON: states,
// durations, JUnit counts, what a job waits for, why it was skipped; plain lines only when a job's
// state changed; the live view redrawn in place with ANSI cursor-up, over a pipe.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>

#include "base/unique_fd.h"
#include "cli/pipeline_view.h"

using namespace kiln;
using namespace kiln::cli;
using json = nlohmann::json;

namespace {

json pipeline_of_four() {
    return json::parse(R"js({
      "id": "pipeline-0123456789ab", "state": "failed",
      "jobs": [
        {"id": "job-000000000001", "name": "lint", "state": "passed", "needs": [],
         "started_at": "2026-12-07T09:00:00.000Z", "duration_ms": 12300, "error": "", "steps": [],
         "junit": {"tests": 3, "failures": 0, "errors": 0, "skipped": 1}},
        {"id": "job-000000000002", "name": "test (18)", "state": "failed", "needs": [],
         "started_at": "2026-12-07T09:00:00.000Z", "duration_ms": 4000, "error": "", "junit": null,
         "steps": [{"name": "install", "state": "passed", "exit_code": 0},
                   {"name": "test", "state": "failed", "exit_code": 3}]},
        {"id": "job-000000000003", "name": "test (20)", "state": "running", "needs": [],
         "started_at": "2026-12-07T09:00:00.000Z", "duration_ms": 0, "error": "", "junit": null,
         "steps": [{"name": "install", "state": "running", "exit_code": null}]},
        {"id": "job-000000000004", "name": "deploy", "state": "waiting",
         "needs": ["job-000000000001", "job-000000000002"], "started_at": null, "duration_ms": 0, "error": "",
         "junit": null, "steps": []}
      ]})js");
}

// 2026-12-07T09:00:05Z
constexpr int64_t kFiveSecondsIn = 1796634005000;

std::string read_all(int fd) {
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    return out;
}

}  // namespace

TEST(CliPipelineView, JobLines) {
    json p = pipeline_of_four();
    EXPECT_EQ(job_line(p["jobs"][0], p, 9, kFiveSecondsIn), "lint       passed       12.3 s  3 tests, 0 failures, 0 errors, 1 skipped");
    EXPECT_EQ(job_line(p["jobs"][1], p, 9, kFiveSecondsIn), "test (18)  failed        4.0 s  step test (exit 3)");
    EXPECT_EQ(job_line(p["jobs"][2], p, 9, kFiveSecondsIn), "test (20)  running       5.0 s  step install");
    EXPECT_EQ(job_line(p["jobs"][3], p, 9, kFiveSecondsIn), "deploy     waiting              needs lint, test (18)");
    p["jobs"][3]["state"] = "skipped";
    p["jobs"][3]["error"] = "skipped: it needs test (18), which did not pass";
    EXPECT_EQ(job_line(p["jobs"][3], p, 9, kFiveSecondsIn), "deploy     skipped              it needs test (18), which did not pass");
    // Before the planner named it, the pipeline's first job.
    json first = {{"id", "job-000000000009"}, {"name", ""}, {"state", "queued"}};
    EXPECT_EQ(job_line(first, p, 0, kFiveSecondsIn), "(planning)  queued");
    EXPECT_EQ(job_counts(p), "1 passed, 1 failed, 1 running, 1 skipped");
    EXPECT_EQ(find_job(p, "test (20)")["id"], "job-000000000003");
    EXPECT_EQ(find_job(p, "job-000000000004")["name"], "deploy");
    EXPECT_TRUE(find_job(p, "test").is_null());
    // Hostile JSON (kilnd's answer is not trusted to be well formed): no throw.
    json odd = {{"jobs", json::array({1, "x", json::object()})}};
    EXPECT_NO_THROW(job_counts(odd));
    EXPECT_NO_THROW(job_line(json::object(), odd, 4, 0));
}

TEST(CliPipelineView, PlainLinesOnlyWhenAStateChanges) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    UniqueFd r(fds[0]), w(fds[1]);
    json p = pipeline_of_four();
    p["jobs"][2]["started_at"] = nullptr;  // the view counts a running job's time on the real clock
    {
        PipelineView view(w.get(), false);
        view.update(p);
        view.update(p);  // nothing changed: nothing printed
        p["jobs"][2]["state"] = "passed";
        p["jobs"][2]["duration_ms"] = 7000;
        p["jobs"][2]["started_at"] = "2026-12-07T09:00:00.000Z";
        view.update(p);
    }
    w.reset();
    std::string out = read_all(r.get());
    EXPECT_EQ(out,
              "lint       passed       12.3 s  3 tests, 0 failures, 0 errors, 1 skipped\n"
              "test (18)  failed        4.0 s  step test (exit 3)\n"
              "test (20)  running              step install\n"
              "deploy     waiting              needs lint, test (18)\n"
              "test (20)  passed        7.0 s\n");
}

TEST(CliPipelineView, LiveRedrawsInPlace) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    UniqueFd r(fds[0]), w(fds[1]);
    json p = pipeline_of_four();
    {
        PipelineView view(w.get(), true);
        view.update(p);
        view.update(p);
    }
    w.reset();
    std::string out = read_all(r.get());
    // The first drawing starts where the cursor is; the second goes up the four lines first.
    EXPECT_EQ(out.rfind("\x1b[", 0), std::string::npos);
    size_t second = out.find("\x1b[4A");
    ASSERT_NE(second, std::string::npos) << out;
    EXPECT_EQ(out.find("\x1b[4A", second + 1), std::string::npos);
    EXPECT_EQ(out.substr(second).find("\rdeploy     waiting"), out.substr(second).rfind("\rdeploy"));
    EXPECT_NE(out.find("\rlint       passed"), std::string::npos);
    EXPECT_NE(out.find("\x1b[K\n"), std::string::npos);
}
