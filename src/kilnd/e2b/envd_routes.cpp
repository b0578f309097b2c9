#include "kilnd/e2b/envd_routes.h"

#include "kilnd/e2b/connect_route.h"
#include "kilnd/e2b/envd_errors.h"
#include "kilnd/e2b/envd_files.h"
#include "kilnd/e2b/envd_filesystem.h"
#include "kilnd/e2b/envd_process.h"

namespace kiln::daemon::e2b {

void add_envd_routes(http::Router& router, EnvdContext& ctx) {
    // 204 while the sandbox runs; the SDK reads 502 as "the sandbox is gone".
    router.Get("/health", [&ctx](const http::Request& req, http::Response& res) {
        auto call = open_envd_call(ctx, req);
        if (!call.ok()) {
            int status = envd_http_status(call.error());
            res.status = status;
            res.set_content(envd_error_body(status, to_connect_error(call.error(), req.request_id).message).dump(),
                            "application/json");
            return;
        }
        res.status = 204;
    });
    add_files_routes(router, ctx);
    add_process_service(router, ctx);
    add_filesystem_service(router, ctx);
}

}  // namespace kiln::daemon::e2b
