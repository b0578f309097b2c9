// FleetGateway: the HTTP layer's part of a fleet (docs/fleet.md). Every sandbox operation that
// reaches a host not running the sandbox goes on to the host that is, and every create goes to
// the host placement picks; the receiving host checks the fleet signature and rebuilds the
// caller from the shared store's token record, so it applies the same scopes, quotas and
// visibility as if the client had called it directly. A request that arrived forwarded is never
// forwarded again.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "daemon/auth/token_store.h"
#include "daemon/data_dir.h"
#include "daemon/fleet/host_registry.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "daemon/store/store.h"
#include "kilnd/http/snapshot_copy.h"

namespace kiln::daemon {

namespace http {
struct Request;
struct Response;
}  // namespace http

struct FleetConfig {
    std::string data_dir;  // snapshots' copies: data_dir/snapshots/<id>
    std::string host_name;
    std::string fleet_secret;  // empty: a one-host kilnd: nothing forwarded, forwarded requests refused
};

class FleetGateway {
public:
    FleetGateway(FleetConfig config, HostRegistry& hosts, Store& store, TokenStore& tokens, SandboxService& service)
        : m_config(std::move(config)), m_hosts(hosts), m_store(store), m_tokens(tokens), m_service(service),
          m_copier(m_config.host_name, m_config.fleet_secret, store) {}

    // Whether the request carries any of the fleet headers (fleet_signature.h).
    static bool is_fleet_request(const http::Request& req);
    // The caller a forwarded request acts for. Anything wrong (a header missing, a bad signature,
    // outside the clock window, no fleet secret here, an unknown or revoked token) is
    // Unauthorized, logged with the peer's claimed host; a forged request never gets further.
    Result<Caller> authenticate(const http::Request& req);
    // Once the body is read: a forwarded request's body must be the one its signature covers
    // (Unauthorized, logged, otherwise). Other requests pass.
    static Status check_body(const http::Request& req);

    // Called with the request authenticated and its body read, before the route's handler: a
    // sandbox operation whose sandbox runs on another host, or a create placed on another host,
    // is sent there and `res` gets its answer (streams stream through). True when it did (or
    // answered an error: the owner is dead or unreachable, 503 naming it); false: handle here.
    bool forward_if_elsewhere(const http::Request& req, http::Response& res);

    const std::string& host_name() const { return m_config.host_name; }
    // Where this host keeps snapshot `id`'s files (as LocalSandboxService does).
    std::string local_snapshot_dir(const std::string& id) const { return snapshot_dir(m_config.data_dir, id); }

private:
    struct Target {
        std::string host;
        std::string url;
    };
    // The host a request must go to; nullopt: this one.
    Result<std::optional<Target>> owner_of_sandbox(const std::string& id);
    // A create: sent to the host placement picks, or handled here (false), after copying its
    // snapshot here if this host holds none.
    bool place_create(const http::Request& req, http::Response& res);
    Result<std::optional<Target>> placement_for_create(const http::Request& req, const std::string& template_id,
                                                       std::optional<uint32_t> memory_mib,
                                                       const std::optional<SnapshotRecord>& snapshot);
    Status copy_snapshot_here(const SnapshotRecord& snapshot, const Caller& caller);
    Result<std::optional<Target>> holder_of_snapshot(const std::string& id);
    Result<Target> reachable(const std::string& host, const std::string& why);

    FleetConfig m_config;
    HostRegistry& m_hosts;
    Store& m_store;
    TokenStore& m_tokens;
    SandboxService& m_service;
    http::SnapshotCopier m_copier;
};

}  // namespace kiln::daemon
