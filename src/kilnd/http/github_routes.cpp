// POST /v1/ci/github: GitHub webhooks. No bearer token: the X-Hub-Signature-256 HMAC authenticates.
#include "ci/github/github_webhook.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

namespace {
// GitHub caps webhook payloads at 25 MB; a push with many commits can pass kilnd's 1 MiB JSON limit.
constexpr size_t kMaxWebhookBody = 25u << 20;
}  // namespace

void add_github_routes(Router& server, RouteContext& ctx) {
    server.Post("/v1/ci/github", [&ctx](const Request& req, Response& res) {
        if (auto st = check_body_size(req, kMaxWebhookBody); !st.ok()) {
            send_error(res, st.error());
            return;
        }
        if (!ctx.config.github_webhook) {
            send_error(res, make_error(ErrorCode::Unavailable, "this kilnd runs no CI jobs, so it takes no GitHub webhooks"));
            return;
        }
        ci::github::WebhookRequest request{req.get_header_value("X-GitHub-Event"),
                                           req.get_header_value("X-GitHub-Delivery"),
                                           req.get_header_value("X-Hub-Signature-256"), req.body};
        auto answer = ctx.config.github_webhook->handle(request);
        send_json(res, answer.status, answer.body);
    }, kMaxWebhookBody);
}

}  // namespace kiln::daemon::http
