// A job's files are on the host that ran it: see job_files_host.h.
#include "kilnd/http/job_files_host.h"

#include "daemon/fleet/host_registry.h"

namespace kiln::daemon::http {

std::string this_host(const RouteContext& ctx) { return ctx.config.hosts ? ctx.config.hosts->name() : std::string(); }

Status job_files_here(const RouteContext& ctx, const ci::JobInfo& job) {
    const std::string self = this_host(ctx);
    if (job.host.empty() || self.empty() || job.host == self) return ok_status();
    const std::string what = "job " + job.id + " runs or ran on host '" + job.host +
                             "': its log, artifacts and test reports are kept there, not on this host ('" + self + "')";
    auto host = ctx.config.hosts->host(job.host);
    if (!host.ok() && host.error().code != ErrorCode::NotFound) return host.error();
    if (!host.ok() || host->state == HostState::Dead)
        return make_error(ErrorCode::Unavailable, what + "; that host is " + (host.ok() ? "dead" : "unknown") +
                                                      ": they can be read when it is back");
    // Not its URL: hosts' internal URLs are for admins (GET /v1/hosts).
    return make_error(ErrorCode::Conflict, what + "; ask that host");
}

}  // namespace kiln::daemon::http
