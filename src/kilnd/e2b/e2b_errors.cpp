// E2B's error shape; see e2b_errors.h.
#include "kilnd/e2b/e2b_errors.h"

#include <nlohmann/json.hpp>

#include "base/json_log.h"
#include "daemon/api_error.h"
#include "kilnd/http/json_render.h"

namespace kiln::daemon::e2b {

int e2b_status(const Error& error) {
    if (error.code == ErrorCode::SandboxNotRunning || error.code == ErrorCode::VmGone) return 502;
    ApiError api = to_api_error(error);
    if (api.http_status == 422) return 400;
    return api.http_status;
}

void send_e2b_status(http::Response& res, int status, const std::string& message) {
    res.status = status;
    res.set_content(nlohmann::json{{"code", status}, {"message", message}}.dump() + "\n", "application/json");
}

void send_e2b_error(http::Response& res, const Error& error) {
    const int status = e2b_status(error);
    if (status >= 500 && status != 502 && status != 503) {
        log::error("internal error", {{"request_id", res.request_id}, {"error", error.to_string()}});
        return send_e2b_status(res, status, "internal error (request " + res.request_id + ")");
    }
    ApiError api = to_api_error(error);
    send_e2b_status(res, status, http::without_host_logs(api.message));
}

}  // namespace kiln::daemon::e2b
