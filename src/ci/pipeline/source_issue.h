// SourceIssue: one problem found in a user's file, with the line and column it is at (1-based).
#pragma once

#include <string>

namespace kiln::ci {

struct SourceIssue {
    int line = 0;    // 1-based; 0 when the problem is the file as a whole (e.g. its size)
    int column = 0;  // 1-based; 0 when unknown
    std::string message;

    // "line 7, column 22: steps[1].timeout_seconds must be a positive integer"
    std::string to_string() const {
        if (line <= 0) return message;
        std::string where = "line " + std::to_string(line);
        if (column > 0) where += ", column " + std::to_string(column);
        return where + ": " + message;
    }
};

}  // namespace kiln::ci
