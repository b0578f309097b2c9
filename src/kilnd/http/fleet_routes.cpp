// The internal API's own routes (docs/fleet.md): only for requests another host of the fleet
// signed (fleet_gateway.h); to anyone else they do not exist.
#include "base/sha256.h"
#include "daemon/fleet/fleet_signature.h"
#include "kilnd/http/file_stream.h"
#include "kilnd/http/fleet_gateway.h"
#include "kilnd/http/route_context.h"
#include "vm/snapshot_manifest.h"

namespace kiln::daemon::http {

void add_fleet_routes(Router& server, RouteContext& ctx) {
    // A snapshot's files, for a host that restores it and holds no copy yet (snapshot_copy.h).
    // Only the four names a snapshot has; the caller must see the snapshot (the token the
    // forwarding host acts for).
    const std::string files = std::string("/v1/internal/snapshots/") + kId + "/files/(" + vm::kManifestFileName + "|" +
                              vm::kStateFileName + "|" + vm::kMemoryFileName + "|" + vm::kDiskFileName + ")";
    server.Get(files, authed(ctx, kSandboxScope, [&ctx](const Caller& caller, const Request& req, Response& res) {
        if (!req.forwarded || !ctx.config.fleet)
            return send_error(res, make_error(ErrorCode::NotFound, "no route GET " + req.path.substr(0, 200)));
        std::string id = path_id(req);
        if (auto snap = ctx.service.get_snapshot(caller, id); !snap.ok()) return send_error(res, snap.error());
        const std::string path = ctx.config.fleet->local_snapshot_dir(id) + "/" + req.matches[2].str();
        // The receiver checks what arrives against this (and the manifest's own SHA-256 where it
        // has one: a sandbox's snapshot records only its sizes, to be quick).
        auto sha256 = sha256_file_hex(path);
        if (!sha256.ok() || !stream_file(res, path).ok())
            return send_error(res, make_error(ErrorCode::NotFound, "snapshot " + id + " has no copy on this host"));
        res.set_header(kSha256Header, *sha256);
    }));
}

}  // namespace kiln::daemon::http
