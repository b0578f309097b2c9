// envd, the in-sandbox API the e2b SDK calls (process.Process and filesystem.Filesystem over the
// Connect protocol, /files, /health), served by kilnd's E2B listener for every sandbox on one
// origin: a request names its sandbox with the E2b-Sandbox-Id header, and its commands and file
// operations go to that sandbox's kiln-agent. docs/e2b.md lists what is supported.
#pragma once

#include <functional>
#include <string>

#include "base/result.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "kilnd/http/http_message.h"
#include "kilnd/http/router.h"

namespace kiln::daemon::e2b {

struct EnvdTarget {
    Caller caller;
    std::string sandbox_id;
};

struct EnvdContext {
    SandboxService& service;
    // Checks E2b-Sandbox-Id and X-Access-Token of an envd request: the sandbox's owner as
    // caller, or an error already in E2B's terms (401 / 404 / 502 ...).
    std::function<Result<EnvdTarget>(const http::Request&)> resolve;
};

void add_envd_routes(http::Router& router, EnvdContext& ctx);

}  // namespace kiln::daemon::e2b
