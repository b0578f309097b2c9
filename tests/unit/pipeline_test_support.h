// What the `.kiln.yml` unit tests share: the issues of a file the parser must refuse, as text.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ci/pipeline/pipeline_parser.h"

namespace kiln::ci::pipeline_test {

// The issues of a file that must be refused, one string each ("line 3, column 5: …").
inline std::vector<std::string> issues_of(const std::string& text) {
    PipelineParse parsed = parse_pipeline_detailed(text);
    EXPECT_FALSE(parsed.pipeline.has_value()) << text;
    std::vector<std::string> out;
    for (const auto& issue : parsed.issues) out.push_back(issue.to_string());
    return out;
}

// The one issue of a file that must be refused with exactly one.
inline std::string only_issue(const std::string& text) {
    auto issues = issues_of(text);
    EXPECT_EQ(issues.size(), 1u) << ::testing::PrintToString(issues);
    return issues.empty() ? "" : issues[0];
}

}  // namespace kiln::ci::pipeline_test
