// libFuzzer target: the JUnit summary reader must never crash or hang on any bytes, and its counts must be consistent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ci/junit/junit_summary.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view xml(reinterpret_cast<const char*>(data), size);
    auto summary = kiln::ci::read_junit_summary(xml);
    if (!summary.ok()) {
        if (summary.error().code != kiln::ErrorCode::InvalidJunit || summary.error().message.empty()) abort();
        return 0;
    }
    // Without attributes every count comes from <testcase> elements, each with at most one outcome.
    const auto& s = *summary;
    if (xml.find('=') == std::string_view::npos && s.failures + s.errors + s.skipped > s.tests) abort();
    return 0;
}
