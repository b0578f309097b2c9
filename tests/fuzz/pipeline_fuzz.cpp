// libFuzzer target: the `.kiln.yml` parser must never crash, throw or hang, and its answers must hold
// together; a pipeline it accepts must plan within the limits, with unique names and needs that exist.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

#include "ci/pipeline/pipeline_parser.h"

namespace {

using Limits = kiln::ci::PipelineLimits;

void check_job(const kiln::ci::JobDefinition& job) {
    if (job.name.empty() || job.name.size() > Limits::kMaxJobNameBytes) abort();
    if (job.steps.empty() || job.steps.size() > Limits::kMaxSteps) abort();
    if (job.timeout_seconds == 0 || job.timeout_seconds > Limits::kMaxTimeoutSeconds) abort();
    for (const auto& step : job.steps) {
        if (step.name.empty() || step.run.empty() || step.run.size() > Limits::kMaxRunBytes) abort();
        if (step.timeout_seconds && (*step.timeout_seconds == 0 || *step.timeout_seconds > job.timeout_seconds)) abort();
    }
    for (const auto& glob : job.artifacts) {
        if (glob.empty() || glob[0] == '/') abort();
    }
    if (job.env.size() > Limits::kMaxEnv) abort();
    if (job.parallel < 1 || job.parallel > Limits::kMaxParallel) abort();
    if (job.fork_after) {
        // A step of the job, not its last, and only with shards to fork into.
        if (job.parallel < 2) abort();
        auto found = std::find_if(job.steps.begin(), job.steps.end(),
                                  [&](const auto& step) { return step.name == *job.fork_after; });
        if (found == job.steps.end() || found + 1 == job.steps.end()) abort();
    }
    if (job.matrix.size() > Limits::kMaxMatrixAxes) abort();
    std::size_t combinations = 1;
    for (const auto& axis : job.matrix) {
        if (axis.values.empty()) abort();
        combinations *= axis.values.size();
        if (combinations > Limits::kMaxMatrixCombinations) abort();
        for (const auto& value : axis.values)
            if (value.empty() || value.size() > Limits::kMaxMatrixValueBytes || value.find('/') != std::string::npos)
                abort();
    }
    if (std::find(job.needs.begin(), job.needs.end(), job.name) != job.needs.end()) abort();
}

void check_plan(const kiln::ci::Pipeline& pipeline) {
    std::vector<kiln::ci::PlannedJob> plan = kiln::ci::plan_pipeline(pipeline);
    if (plan.empty() || plan.size() > Limits::kMaxPlannedJobs) abort();
    std::set<std::string> earlier;
    std::set<std::string> names;
    for (const auto& planned : plan) {
        if (planned.name.empty() || planned.name.size() > Limits::kMaxPlannedNameBytes) abort();
        if (!names.insert(planned.name).second) abort();
        if (planned.definition >= pipeline.jobs.size()) abort();
        if (planned.matrix.size() != pipeline.jobs[planned.definition].matrix.size()) abort();
    }
    // Every need is a planned job other than itself, listed once; the needs make no cycle: a job
    // whose needs all come before it in some order exists at every step (Kahn's algorithm).
    std::set<std::string> done;
    std::size_t before;
    do {
        before = done.size();
        for (const auto& planned : plan) {
            std::set<std::string> unique(planned.needs.begin(), planned.needs.end());
            if (unique.size() != planned.needs.size() || unique.count(planned.name)) abort();
            bool ready = true;
            for (const auto& need : planned.needs) {
                if (!names.count(need)) abort();
                ready = ready && done.count(need);
            }
            if (ready) done.insert(planned.name);
        }
    } while (done.size() != before);
    if (done.size() != plan.size()) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    kiln::ci::PipelineParse parsed = kiln::ci::parse_pipeline_detailed(text);
    // Exactly one of: a pipeline, or at least one issue (with a line unless it is about the whole file).
    if (parsed.pipeline.has_value() == !parsed.issues.empty()) abort();
    if (parsed.issues.size() > 50) abort();
    for (const auto& issue : parsed.issues) {
        if (issue.message.empty() || issue.line < 0 || issue.column < 0) abort();
    }
    if (const auto& p = parsed.pipeline) {
        if (p->jobs.empty() || p->jobs.size() > Limits::kMaxJobs) abort();
        std::set<std::string> names;
        for (const auto& job : p->jobs) {
            check_job(job);
            if (!names.insert(job.name).second) abort();
        }
        check_plan(*p);
    }
    return 0;
}
