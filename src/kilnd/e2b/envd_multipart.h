// multipart/form-data (RFC 7578) bodies, as the e2b SDK uploads files to envd's POST /files: one
// part per file, named "file", its filename the file's path. Hostile input: any bytes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace kiln::daemon::e2b {

inline constexpr size_t kMaxMultipartParts = 1000;

struct FormPart {
    std::string name;      // Content-Disposition's name
    std::string filename;  // and its filename ("" when none)
    std::string_view data; // into the body
};

// The boundary of a `multipart/form-data; boundary=...` Content-Type, or an error.
Result<std::string> multipart_boundary(std::string_view content_type);
// The parts of `body` (which must outlive them), or an error for a malformed body.
Result<std::vector<FormPart>> parse_multipart(std::string_view body, const std::string& boundary);

}  // namespace kiln::daemon::e2b
