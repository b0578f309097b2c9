// kilnd's E2B listener (config e2b_listen, docs/e2b.md): E2B's control plane and every sandbox's
// envd on one origin, over the same Beast server as Kiln's API, so that E2B's unmodified SDKs
// run against Kiln with E2B_API_URL and E2B_SANDBOX_URL both set to it.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "daemon/auth/token_store.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "kilnd/http/http_server.h"
#include "kilnd/metrics.h"

namespace kiln::daemon::e2b {

// `http` gives the address (http.listen), limits and threads; the envd access tokens' key lives
// in `data_dir` (access_tokens.h). API keys (X-API-KEY) are Kiln tokens, checked by `tokens`.
Result<std::unique_ptr<HttpServer>> create_e2b_listener(HttpConfig http, const std::string& data_dir,
                                                        SandboxService& service, TokenStore& tokens, Metrics& metrics);

}  // namespace kiln::daemon::e2b
