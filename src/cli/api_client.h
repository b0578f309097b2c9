// ApiClient: the `kiln` side of kilnd's REST API (api/openapi.yaml): URL and token, JSON calls, streams.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace httplib {
class Client;
}

namespace CLI {
class App;
}

namespace kiln::cli {

// The flags every API command takes. Empty url/token: $KILN_URL / $KILN_TOKEN.
struct ApiOptions {
    std::string url;
    std::string token;
    bool json_output = false;
    bool verbose = false;
};

// Adds --url, --token, --json and -v to one command.
void add_api_options(CLI::App* command, ApiOptions& options);

// Errors made by kiln itself (not answered by kilnd) carry one of the Cli* codes (is_cli_local()),
// so that print_api_error() prints only their message.

// Prints "kiln: <code>: <message>" for an error kilnd answered, "kiln: <message>" for our own.
void print_api_error(const Error& error);
// The Error for an API error object {"code", "message"} (an answer's "error", or an exec stream's
// error event).
Error error_from_api(const nlohmann::json& error);

// Percent-encodes a query-string value (RFC 3986 unreserved characters and '/' stay).
std::string url_encode(std::string_view text);
// "/v1/sandboxes/<id>" with the id checked (letters, digits, '-', '_', '.') so it stays one segment.
Result<std::string> sandbox_path(const std::string& id);

class ApiClient {
public:
    // Reads --url/--token, else $KILN_URL (default http://127.0.0.1:7070) and $KILN_TOKEN.
    static Result<std::unique_ptr<ApiClient>> create(const ApiOptions& options);
    ~ApiClient();

    ApiClient(const ApiClient&) = delete;
    ApiClient& operator=(const ApiClient&) = delete;

    const std::string& url() const { return m_url; }

    // How long a call may wait for kilnd's next bytes (default 600 s: a create may bake a template).
    void set_read_timeout(int seconds);

    // A JSON call. `body` null: no body. Returns the answer's JSON (null for 204), or the
    // API's {error: {code, message}} as an Error.
    Result<nlohmann::json> call(const std::string& method, const std::string& path,
                                const nlohmann::json& body = nullptr);

    // POST with `Accept: application/x-ndjson`: calls on_event for each line as it comes.
    // on_event returns false to stop reading. A non-2xx answer is returned as an Error.
    // method "GET": no body is sent (e.g. following a job's log).
    Status stream_ndjson(const std::string& path, const nlohmann::json& body,
                         const std::function<bool(const nlohmann::json& event)>& on_event,
                         const std::string& method = "POST");

    // GET of raw bytes, streamed to `sink` (which returns false to stop: a local write error).
    Status download(const std::string& path, const std::function<bool(const char* data, size_t size)>& sink);

    // PUT or POST of `size` bytes read from fd (from its current offset); returns the JSON answer.
    Result<nlohmann::json> upload(const std::string& method, const std::string& path, const std::string& content_type,
                                  int fd, uint64_t size);

private:
    ApiClient(std::string url, std::string base_path, std::unique_ptr<httplib::Client> client);

    std::string m_url;        // as given, for messages
    std::string m_base_path;  // a path prefix from the URL ("" usually)
    std::unique_ptr<httplib::Client> m_client;
};

// Makes a client from `options` and runs `body` with it. Prints any error (print_api_error) and
// returns the exit code: body's value, or kExitKilnError.
int run_with_client(const ApiOptions& options, const std::function<Result<int>(ApiClient& client)>& body);

}  // namespace kiln::cli
