// Forwarding and placement in a fleet; see fleet_gateway.h.
#include "kilnd/http/fleet_gateway.h"

#include <algorithm>

#include "base/clock.h"
#include "base/sha256.h"
#include "base/json_log.h"
#include "daemon/fleet/fleet_signature.h"
#include "daemon/fleet/placement.h"
#include "kilnd/http/forward_client.h"
#include "kilnd/http/http_message.h"
#include "kilnd/http/request_parsing.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon {

using http::Request;
using http::Response;

namespace {

std::optional<std::string> header(const Request& req, const char* name) {
    if (!req.has_header(name)) return std::nullopt;
    return req.get_header_value(name);
}

const std::string kSnapshotsPrefix = "/v1/snapshots/";

// /v1/sandboxes/{id} and everything under it; "" for other paths.
std::string sandbox_id_of(const std::string& path) {
    static const std::string kPrefix = "/v1/sandboxes/";
    if (path.compare(0, kPrefix.size(), kPrefix) != 0) return "";
    size_t end = path.find('/', kPrefix.size());
    return path.substr(kPrefix.size(), end == std::string::npos ? std::string::npos : end - kPrefix.size());
}

}  // namespace

bool FleetGateway::is_fleet_request(const Request& req) {
    for (const char* name : fleet::kFleetHeaders)
        if (req.has_header(name)) return true;
    return false;
}

Status FleetGateway::check_body(const Request& req) {
    if (!req.forwarded || sha256_hex(req.body) == req.get_header_value(fleet::kFleetBodyHeader)) return ok_status();
    log::warn("fleet request refused", {{"request_id", req.request_id},
                                        {"claimed_host", req.get_header_value(fleet::kFleetHostHeader).substr(0, 64)},
                                        {"reason", "the body is not the one signed"}});
    return make_error(ErrorCode::Unauthorized, "fleet request refused: the body is not the one signed");
}

Result<Caller> FleetGateway::authenticate(const Request& req) {
    fleet::FleetHeaders h{header(req, fleet::kFleetHostHeader), header(req, fleet::kFleetTimeHeader),
                          header(req, fleet::kFleetTokenHeader), header(req, fleet::kFleetBodyHeader),
                          header(req, fleet::kFleetSignatureHeader)};
    auto claim = fleet::verify_fleet_request(m_config.fleet_secret, h, req.method, req.target, now_unix_ms());
    if (!claim.ok()) {
        log::warn("fleet request refused", {{"request_id", req.request_id},
                                            {"claimed_host", h.host.value_or("").substr(0, 64)},
                                            {"method", req.method},
                                            {"path", req.path.substr(0, 256)},
                                            {"reason", claim.error().message}});
        return claim.error();
    }
    auto caller = m_tokens.caller_by_id(claim->token_id);
    if (!caller.ok())
        log::warn("fleet request refused", {{"request_id", req.request_id}, {"claimed_host", claim->host},
                                            {"reason", "token " + std::to_string(claim->token_id) + ": " + caller.error().message}});
    return caller;
}

Result<FleetGateway::Target> FleetGateway::reachable(const std::string& host, const std::string& why) {
    auto status = m_hosts.host(host);
    if (!status.ok() && status.error().code == ErrorCode::NotFound)
        return make_error(ErrorCode::Unavailable, why + " on host " + host + ", which is not registered");
    if (!status.ok())
        return make_error(ErrorCode::Unavailable, why + " on host " + host + ", which the store cannot tell about: " +
                                                      status.error().message);
    // A draining host still runs its sandboxes: only a dead one (no heartbeat within
    // host_timeout_seconds, or stopped) is not asked.
    if (status->state == HostState::Dead)
        return make_error(ErrorCode::Unavailable, why + " on host " + host + ", which is dead (" +
                                                      (status->record.stopped_at_ms > 0 ? std::string("stopped")
                                                                                        : "no heartbeat for " + std::to_string(status->heartbeat_age_ms / 1000) + " s") +
                                                      ")");
    return Target{host, status->record.spec.advertise_url};
}

Result<std::optional<FleetGateway::Target>> FleetGateway::owner_of_sandbox(const std::string& id) {
    using Out = std::optional<Target>;
    if (!http::plausible_sandbox_id(id)) return Out();  // the route answers not_found
    auto record = TRY(m_store.get_sandbox(id));
    // Unknown (the route answers not_found, after its owner check), from before the fleet (no
    // host), or ours.
    if (!record || record->info.host.empty() || record->info.host == m_config.host_name) return Out();
    // A finished sandbox has nothing on its host: its record answers GET and DELETE here alike.
    // A paused one has its snapshot there: its pause, resume and delete go to that host.
    if (is_ended(record->info.state())) return Out();
    return Out(TRY(reachable(record->info.host, "sandbox " + id + " runs")));
}

Result<std::optional<FleetGateway::Target>> FleetGateway::holder_of_snapshot(const std::string& id) {
    using Out = std::optional<Target>;
    if (!http::plausible_snapshot_id(id)) return Out();
    auto snap = TRY(m_store.get_snapshot(id));
    if (!snap || snap->info.hosts.empty()) return Out();
    for (const auto& h : snap->info.hosts)
        if (h == m_config.host_name) return Out();
    // Its files are on the host that took it: that host deletes them with the record.
    return Out(TRY(reachable(snap->info.hosts.front(), "snapshot " + id + " is held")));
}

Result<std::optional<FleetGateway::Target>> FleetGateway::placement_for_create(const Request& req,
                                                                               const std::string& template_id,
                                                                               std::optional<uint32_t> memory_mib,
                                                                               const std::optional<SnapshotRecord>& snapshot) {
    using Out = std::optional<Target>;
    fleet::PlacementRequest request;
    std::vector<std::string> holders;
    if (snapshot) {
        holders = snapshot->info.hosts.empty() ? std::vector<std::string>{m_config.host_name} : snapshot->info.hosts;
        request.memory_mib = snapshot->info.memory_mib;
        // Any host can restore it once it has a copy, and a copy needs a holder that answers.
        bool holder_alive = false;
        for (const auto& h : holders)
            if (auto status = m_hosts.host(h); status.ok() && status->state != HostState::Dead) holder_alive = true;
        request.must_hold_source = !holder_alive;
    } else {
        holders = TRY(m_hosts.hosts_that_ran(template_id));
        if (auto t = m_service.get_template(*req.caller, template_id); t.ok()) request.memory_mib = t->memory_mib;
    }
    if (memory_mib) request.memory_mib = *memory_mib;
    auto host = fleet::choose_host(fleet::host_loads(TRY(m_hosts.hosts()), holders), request);
    if (!host.ok() && snapshot && request.must_hold_source)
        return make_error(host.error().code, host.error().message + "; snapshot " + snapshot->info.id +
                                                 " cannot be copied elsewhere while none of its hosts answers");
    if (!host.ok()) return host.error();
    if (*host == m_config.host_name) return Out();
    return Out(TRY(reachable(*host, "the sandbox was placed")));
}

Status FleetGateway::copy_snapshot_here(const SnapshotRecord& snapshot, const Caller& caller) {
    std::string last_error = "it lists no host";
    for (const auto& holder : snapshot.info.hosts) {
        if (holder == m_config.host_name) continue;
        auto from = reachable(holder, "snapshot " + snapshot.info.id + " is held");
        if (!from.ok()) {
            last_error = from.error().message;
            continue;
        }
        auto copied = m_copier.copy_here(snapshot.info.id, local_snapshot_dir(snapshot.info.id), http::ForwardTarget{from->host, from->url},
                                         caller.token_id);
        if (copied.ok()) return copied;
        last_error = copied.error().message;
    }
    return make_error(ErrorCode::Unavailable, "snapshot " + snapshot.info.id + " could not be copied to host " +
                                                  m_config.host_name + ": " + last_error);
}

bool FleetGateway::place_create(const Request& req, Response& res) {
    auto create = http::parse_create(req.body);
    if (!create.ok()) return false;  // the route answers the error here
    std::optional<SnapshotRecord> snapshot;
    if (http::plausible_snapshot_id(create->template_id)) {
        auto found = m_store.get_snapshot(create->template_id);
        if (!found.ok()) {
            http::send_error(res, found.error());
            return true;
        }
        // Not the caller's: the route answers template_not_found, as it would without a fleet.
        if (!*found || !req.caller->may_touch((*found)->info.owner_token_id)) return false;
        snapshot = std::move(**found);
    }
    // A forwarded create was placed by the host that forwarded it: it runs here.
    if (!req.forwarded) {
        auto target = placement_for_create(req, create->template_id, create->memory_mib, snapshot);
        if (!target.ok()) {
            http::send_error(res, target.error());
            return true;
        }
        if (*target) {
            log::debug("create placed", {{"request_id", req.request_id}, {"on", (*target)->host}});
            http::forward_request(http::ForwardTarget{(*target)->host, (*target)->url}, m_config.host_name,
                                  m_config.fleet_secret, req, res);
            return true;
        }
    }
    if (snapshot && !snapshot->info.hosts.empty() &&
        std::find(snapshot->info.hosts.begin(), snapshot->info.hosts.end(), m_config.host_name) == snapshot->info.hosts.end()) {
        if (auto st = copy_snapshot_here(*snapshot, *req.caller); !st.ok()) {
            http::send_error(res, st.error());
            return true;
        }
    }
    return false;
}

bool FleetGateway::forward_if_elsewhere(const Request& req, Response& res) {
    if (m_config.fleet_secret.empty() || !req.caller) return false;
    if (req.method == "POST" && req.path == "/v1/sandboxes") return place_create(req, res);
    Result<std::optional<Target>> target = std::optional<Target>();
    if (std::string id = sandbox_id_of(req.path); !id.empty()) target = owner_of_sandbox(id);
    else if (req.method == "DELETE" && req.path.compare(0, kSnapshotsPrefix.size(), kSnapshotsPrefix) == 0)
        target = holder_of_snapshot(req.path.substr(kSnapshotsPrefix.size()));
    else return false;
    if (!target.ok()) {
        http::send_error(res, target.error());
        return true;
    }
    if (!*target) return false;
    if (req.forwarded) {
        // Never forwarded twice (no loops): the host that sent it here saw another owner than
        // the store shows now.
        http::send_error(res, make_error(ErrorCode::Unavailable, "host " + req.get_header_value(fleet::kFleetHostHeader).substr(0, 64) +
                                                                     " forwarded this to host " + m_config.host_name +
                                                                     ", but it belongs to host " + (*target)->host + "; try again"));
        return true;
    }
    log::debug("forwarding", {{"request_id", req.request_id}, {"to", (*target)->host}, {"path", req.path.substr(0, 256)}});
    http::ForwardTarget to{(*target)->host, (*target)->url};
    http::forward_request(to, m_config.host_name, m_config.fleet_secret, req, res);
    return true;
}

}  // namespace kiln::daemon
