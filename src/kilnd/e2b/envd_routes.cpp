// Placeholder: the envd routes (process, filesystem, /files, /health) are e2b-envd's.
#include "kilnd/e2b/envd_routes.h"

namespace kiln::daemon::e2b {
void add_envd_routes(http::Router&, EnvdContext&) {}
}  // namespace kiln::daemon::e2b
