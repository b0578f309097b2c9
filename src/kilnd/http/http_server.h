// HttpServer: kilnd's REST API (api/openapi.yaml) over Boost.Beast/Asio, in front of SandboxService.
// Limits, threads and streams: docs/http.md.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "daemon/auth/authenticator.h"
#include "daemon/auth/session_store.h"
#include "daemon/disk_guard.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "kilnd/metrics.h"

namespace kiln::ci::github {
class GithubWebhook;
}
namespace kiln::ci {
class JobService;
}

namespace kiln::daemon {

class HostRegistry;
class FleetGateway;
namespace http {
struct Request;
struct Response;
class Router;
}  // namespace http

// A listener that speaks another API than Kiln's own (E2B's, src/kilnd/e2b) over the same
// server: its routes, how a request to a route that takes a token authenticates, and how an
// error the server answers itself (no route, a bad key, a limit, an exception) reads.
struct ApiDialect {
    std::function<void(http::Router&)> add_routes;
    std::function<Result<Caller>(const http::Request&)> authenticate;
    std::function<void(http::Response&, const Error&)> send_error;
};

struct HttpConfig {
    std::string listen = "127.0.0.1:7070";   // host:port (port 0: any free port, see port())
    size_t max_json_body = 1 << 20;          // JSON request bodies
    size_t max_upload_body = 64ull << 20;    // file and tar uploads
    size_t max_exec_output = 4ull << 20;     // bytes kept per stream of a buffered exec
    int client_timeout_seconds = 30;         // a client that sends nothing this long is dropped
    int worker_threads = 32;                 // the request pool (handlers); streams use none of it
    int max_requests_per_token = 64;         // requests in flight per token (429 beyond)
    int max_streams_per_token = 256;         // open streams per token (429 beyond)
    std::string version;                     // for /healthz
    std::string accel;                       // "kvm" | "tcg", for /healthz and /metrics
    ci::github::GithubWebhook* github_webhook = nullptr;  // POST /v1/ci/github (not owned); null: 503
    ci::JobService* jobs = nullptr;                       // /v1/jobs (not owned); null: 503
    // How people reach kilnd (config public_url): the dashboard's links, its cookie's Secure flag
    // (https) and the origin its session checks accept besides the request's own Host.
    std::string public_url;
    SessionStore* sessions = nullptr;  // the dashboard's sign-in (POST /ui/session); null: 503 (not owned)
    const DiskGuard* disk = nullptr;  // /healthz reports the data disk's free space (not owned)
    // The fleet's hosts: /v1/hosts and /metrics' per-host gauges (not owned); null: /v1/hosts 503.
    HostRegistry* hosts = nullptr;
    // Forwarding and placement between the hosts of a fleet (fleet_gateway.h; not owned); null:
    // none, and requests posing as forwarded ones are refused.
    FleetGateway* fleet = nullptr;
};

class HttpServer {
public:
    static Result<std::unique_ptr<HttpServer>> create(HttpConfig config, SandboxService& service,
                                                      Authenticator& auth, Metrics& metrics);
    // The same server speaking `dialect` instead of Kiln's API (none of Kiln's routes, no fleet
    // forwarding). `config` gives its listen address, limits and threads.
    static Result<std::unique_ptr<HttpServer>> create(HttpConfig config, SandboxService& service,
                                                      Authenticator& auth, Metrics& metrics, ApiDialect dialect);
    virtual ~HttpServer() = default;
    // Binds (fails with a clear error if the address is taken), then serves until stop().
    virtual Status bind() = 0;
    virtual int port() const = 0;
    virtual Status serve() = 0;  // blocks
    // Stops accepting; requests in flight finish. Safe from any thread.
    virtual void stop() = 0;
};

}  // namespace kiln::daemon
