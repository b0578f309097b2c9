// libFuzzer target: the JUnit readers (the summary, and the cases the dashboard lists) must never
// crash or hang on any bytes, their counts must be consistent, and they must agree on what they
// refuse.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ci/junit/junit_cases.h"
#include "ci/junit/junit_summary.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view xml(reinterpret_cast<const char*>(data), size);
    auto summary = kiln::ci::read_junit_summary(xml);
    kiln::ci::JunitCaseLimits limits;
    limits.max_text_bytes = 256;
    auto cases = kiln::ci::read_junit_cases(xml, limits);
    if (!summary.ok()) {
        if (summary.error().code != kiln::ErrorCode::InvalidJunit || summary.error().message.empty()) abort();
        return 0;
    }
    // Without attributes every count comes from <testcase> elements, each with at most one outcome.
    const auto& s = *summary;
    if (xml.find('=') == std::string_view::npos && s.failures + s.errors + s.skipped > s.tests) abort();
    if (cases.ok()) {
        for (const auto& c : *cases)
            if (c.message.size() > limits.max_text_bytes || c.type.size() > limits.max_text_bytes ||
                c.output.size() > 4 * limits.max_text_bytes)
                abort();  // a case's texts stay within their caps whatever the report holds
    } else if (cases.error().message.empty()) {
        abort();
    }
    return 0;
}
