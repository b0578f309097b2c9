// How `kiln ci` shows a pipeline's jobs (the API's pipeline JSON): one line per job with its name,
// state, duration and JUnit counts (or what it waits for, or why it was skipped or errored).
// PipelineView redraws those lines in place on a terminal, or prints a job's line each time its
// state changes when the output is not one.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace kiln::cli {

// "lint      passed    12.3 s  3 tests, 0 failures, 0 errors, 0 skipped"; the name padded to
// `name_width`. A running job's duration is counted to `now_unix_ms`.
std::string job_line(const nlohmann::json& job, const nlohmann::json& pipeline, size_t name_width, int64_t now_unix_ms);
// "3 passed, 1 failed, 1 skipped" over the pipeline's jobs.
std::string job_counts(const nlohmann::json& pipeline);
// The pipeline's job whose planned name or id is `name_or_id`; null when none is.
nlohmann::json find_job(const nlohmann::json& pipeline, const std::string& name_or_id);

class PipelineView {
public:
    // fd: where the lines go. live: redraw them in place (ANSI cursor-up; fd is a terminal).
    PipelineView(int fd, bool live);
    // Draws `pipeline` (live), or prints the lines of the jobs whose state changed since the last
    // call (plain; jobs not yet named by the planner are left out).
    void update(const nlohmann::json& pipeline);

private:
    int m_fd;
    bool m_live;
    size_t m_drawn = 0;                          // live: lines on screen to redraw
    std::map<std::string, std::string> m_shown;  // plain: job id -> state printed last
};

}  // namespace kiln::cli
