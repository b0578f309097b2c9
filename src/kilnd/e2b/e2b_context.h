// What the E2B listener's routes share (internal to src/kilnd/e2b).
#pragma once

#include <memory>

#include "daemon/auth/token_store.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "kilnd/e2b/access_tokens.h"
#include "kilnd/e2b/envd_routes.h"
#include "kilnd/http/router.h"

namespace kiln::daemon::e2b {

struct E2bContext {
    SandboxService& service;
    TokenStore& tokens;
    AccessTokens access;
    EnvdContext envd;
};

// POST /sandboxes and /v2/sandboxes, connect, GET/DELETE /sandboxes/{id}, the lists, timeout,
// pause, and clear "not supported" answers for E2B calls Kiln has no equivalent of.
void add_control_routes(http::Router& router, E2bContext& ctx);

// The sandbox and its owner for an envd request (E2b-Sandbox-Id, X-Access-Token); see
// EnvdContext::resolve.
Result<EnvdTarget> resolve_envd_target(E2bContext& ctx, const http::Request& req);

}  // namespace kiln::daemon::e2b
