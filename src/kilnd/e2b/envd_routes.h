// The seam between the E2B listener's control plane (e2b_listener.cpp) and its envd routes
// (e2b-envd's envd_*.cpp): the listener calls add_envd_routes; the envd routes ask `resolve` which
// sandbox a request is for and as whom. Placeholder until the envd routes land.
#pragma once

#include <functional>
#include <string>

#include "base/result.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "kilnd/http/router.h"

namespace kiln::daemon::e2b {
struct EnvdTarget { Caller caller; std::string sandbox_id; };
struct EnvdContext {
    SandboxService& service;
    // Checks E2b-Sandbox-Id and X-Access-Token of an envd request: the sandbox's owner as
    // caller, or an error already in E2B's terms (401 / 404 / 502 ...).
    std::function<Result<EnvdTarget>(const http::Request&)> resolve;
};
void add_envd_routes(http::Router& router, EnvdContext& ctx);
}
