// libFuzzer target: the `.kiln.yml` parser must never crash, throw or hang, and its answers must hold together.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ci/pipeline/pipeline_parser.h"

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
        using Limits = kiln::ci::PipelineLimits;
        if (p->steps.empty() || p->steps.size() > Limits::kMaxSteps) abort();
        if (p->timeout_seconds == 0 || p->timeout_seconds > Limits::kMaxTimeoutSeconds) abort();
        for (const auto& step : p->steps) {
            if (step.name.empty() || step.run.empty() || step.run.size() > Limits::kMaxRunBytes) abort();
            if (step.timeout_seconds && (*step.timeout_seconds == 0 || *step.timeout_seconds > p->timeout_seconds)) abort();
        }
        for (const auto& glob : p->artifacts) {
            if (glob.empty() || glob[0] == '/') abort();
        }
    }
    return 0;
}
