// envd's GET /files (download a file's bytes) and POST /files (upload: multipart/form-data with
// one "file" part per file, or application/octet-stream with ?path=), answered with envd's
// {code, message} errors.
#pragma once

#include "kilnd/e2b/envd_routes.h"

namespace kiln::daemon::e2b {

// Uploads are held in memory whole before they go to the guest: Kiln's own upload limit.
inline constexpr size_t kMaxEnvdUpload = 64ull << 20;

void add_files_routes(http::Router& router, EnvdContext& ctx);

}  // namespace kiln::daemon::e2b
