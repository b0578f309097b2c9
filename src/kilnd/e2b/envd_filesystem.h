// envd's filesystem.Filesystem service over Kiln's agent: Stat, ListDir (with depth), MakeDir,
// Move, Remove, WatchDir (a stream) and CreateWatcher / GetWatcherEvents / RemoveWatcher.
#pragma once

#include "kilnd/e2b/envd_routes.h"

namespace kiln::daemon::e2b {

void add_filesystem_service(http::Router& router, EnvdContext& ctx);

}  // namespace kiln::daemon::e2b
