// Where a CI job's files are: its log, artifacts and kept test reports are written on the host that
// ran it ($DATA/jobs/<id> there), not in the shared store. In a fleet (docs/fleet.md) a request for
// them that reaches another host cannot read them here; until such requests are forwarded to the
// owning host (as sandbox operations are), it is answered with an error naming that host.
// Internal to src/kilnd/http.
#pragma once

#include <string>

#include "base/result.h"
#include "ci/jobs/job_service.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

// This kilnd's host_name; "" without a host registry (a kilnd of one host: every job is its own).
std::string this_host(const RouteContext& ctx);

// ok when the job's files are on this host: it ran (or runs) here, or no host holds it yet
// (queued) or it is from before hosts. Else 409 (its host is alive: ask it) or 503 (its
// host is dead or unknown: the files come back with it), naming the host (not its URL: the
// hosts' internal URLs are for admins, GET /v1/hosts).
Status job_files_here(const RouteContext& ctx, const ci::JobInfo& job);

}  // namespace kiln::daemon::http
