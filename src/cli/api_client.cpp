// ApiClient over cpp-httplib's client: URL/token resolution, error mapping, NDJSON and byte streams.
#include "cli/api_client.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <httplib.h>

#include "cli/cli_context.h"

namespace kiln::cli {
namespace {

using nlohmann::json;

constexpr const char* kDefaultUrl = "http://127.0.0.1:7070";
constexpr size_t kMaxErrorBody = 64 * 1024;     // an error answer bigger than this is not ours
constexpr size_t kMaxNdjsonLine = 64ull << 20;  // one event; kilnd sends output in small chunks

// One of the CLI's own failures (an is_cli_local() code): printed without its code.
Error local_error(ErrorCode code, std::string message) { return make_error(code, std::move(message)); }

std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : fallback;
}

// Splits "http://host:port/prefix" into the scheme://host:port httplib wants and the path prefix.
struct ParsedUrl {
    std::string origin;
    std::string base_path;
};

Result<ParsedUrl> parse_url(const std::string& url) {
    auto bad = [&](const std::string& why) {
        return local_error(ErrorCode::CliUsage, "bad kilnd URL '" + url + "': " + why + " (expected http://HOST:PORT)");
    };
    size_t scheme_end = url.find("://");
    if (scheme_end == std::string::npos) return bad("no scheme");
    std::string scheme = url.substr(0, scheme_end);
    if (scheme != "http" && scheme != "https") return bad("the scheme must be http or https");
    std::string rest = url.substr(scheme_end + 3);
    size_t slash = rest.find('/');
    std::string authority = rest.substr(0, slash);
    std::string path = slash == std::string::npos ? "" : rest.substr(slash);
    while (!path.empty() && path.back() == '/') path.pop_back();
    if (authority.empty()) return bad("no host");
    if (authority.find('@') != std::string::npos) return bad("user info is not supported; use --token");
    if (path.find_first_of("?#") != std::string::npos) return bad("no query or fragment allowed");
    // The port, if any, must be a number (IPv6 literals are in brackets).
    size_t colon = authority.rfind(':');
    if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
        std::string port = authority.substr(colon + 1);
        if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
            std::stoi(port) == 0 || std::stoi(port) > 65535)
            return bad("the port must be a number from 1 to 65535");
    }
    return ParsedUrl{scheme + "://" + authority, path};
}

// The message for a request that got no HTTP answer at all.
Error transport_error(const std::string& url, httplib::Error err) {
    switch (err) {
        case httplib::Error::Connection:
        case httplib::Error::ConnectionTimeout:
            return local_error(ErrorCode::CliUnreachable, "cannot reach kilnd at " + url +
                                                  (err == httplib::Error::Connection ? " (could not connect)"
                                                                                     : " (connecting timed out)") +
                                                  "; is kilnd running? Set KILN_URL or --url");
        case httplib::Error::Read:
            return local_error(ErrorCode::CliIo, "kilnd at " + url +
                                           " closed the connection or stopped answering before the reply was complete");
        case httplib::Error::Write:
            return local_error(ErrorCode::CliIo, "could not send the request to kilnd at " + url);
        default:
            return local_error(ErrorCode::CliProtocol, "request to kilnd at " + url + " failed: " + httplib::to_string(err));
    }
}

// The API's {error: {code, message}}, or a description of whatever else came.
Error api_error(int status, const std::string& body) {
    json j = json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_object()) {
        const json& e = j["error"];
        if (e.contains("code") && e["code"].is_string()) return error_from_api(e);
    }
    std::string excerpt = body.substr(0, 200);
    for (char& c : excerpt)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return local_error(ErrorCode::CliProtocol, "kilnd answered HTTP " + std::to_string(status) +
                                   (excerpt.empty() ? std::string() : ": " + excerpt));
}

Result<std::string> dump_json(const json& body) {
    try {
        return body.dump();
    } catch (const json::exception&) {
        return local_error(ErrorCode::CliUsage, "an argument is not valid UTF-8 text");
    }
}

bool is_success(int status) { return status >= 200 && status < 300; }

}  // namespace

void add_api_options(CLI::App* command, ApiOptions& options) {
    command->add_option("--url", options.url, "kilnd's URL (default: $KILN_URL, else http://127.0.0.1:7070)");
    command->add_option("--token", options.token, "API token (default: $KILN_TOKEN)");
    command->add_flag("--json", options.json_output, "Print the API's JSON instead of text");
    command->add_flag("-v,--verbose", options.verbose, "Show progress on stderr even when it is not a terminal");
}

void print_api_error(const Error& error) {
    if (is_cli_local(error.code)) print_error(error.message);
    else print_error(std::string(code_name(error.code)) + ": " + (error.message.empty() ? "(no message)" : error.message));
}

Error error_from_api(const nlohmann::json& error) {
    std::string message = error.contains("message") && error["message"].is_string() ? error["message"].get<std::string>() : "";
    if (!error.contains("code") || !error["code"].is_string()) return make_error(ErrorCode::Internal, message);
    std::string code = error["code"].get<std::string>();
    if (auto known = parse_error_code(code); known && !is_cli_local(*known)) return make_error(*known, message);
    // A code this CLI does not know (a newer kilnd): print it as kilnd sent it.
    return make_error(ErrorCode::CliProtocol, code + ": " + (message.empty() ? "(no message)" : message));
}

std::string url_encode(std::string_view text) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

Result<std::string> sandbox_path(const std::string& id) {
    if (id.empty() || id.size() > 128 || id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                              "0123456789-_.") != std::string::npos ||
        id == "." || id == "..")
        return local_error(ErrorCode::CliUsage, "'" + id + "' is not a sandbox id (they look like sb-0123456789ab)");
    return "/v1/sandboxes/" + id;
}

int run_with_client(const ApiOptions& options, const std::function<Result<int>(ApiClient& client)>& body) {
    auto client = ApiClient::create(options);
    if (!client.ok()) {
        print_api_error(client.error());
        return kExitKilnError;
    }
    auto code = body(**client);
    if (!code.ok()) {
        print_api_error(code.error());
        return kExitKilnError;
    }
    return *code;
}

Result<std::unique_ptr<ApiClient>> ApiClient::create(const ApiOptions& options) {
    std::string url = options.url.empty() ? env_or("KILN_URL", kDefaultUrl) : options.url;
    std::string token = options.token.empty() ? env_or("KILN_TOKEN", "") : options.token;
    ParsedUrl parsed = TRY(parse_url(url));
    if (token.empty())
        return local_error(ErrorCode::CliUsage, "KILN_TOKEN is not set; create one with `kilnd token create --name NAME --scope SCOPE`");
    if (token.find_first_of("\r\n") != std::string::npos)
        return local_error(ErrorCode::CliUsage, "the token must not contain line breaks");
    auto client = std::make_unique<httplib::Client>(parsed.origin);
    if (!client->is_valid()) return local_error(ErrorCode::CliUsage, "cannot use kilnd URL '" + url + "'");
    client->set_bearer_token_auth(token);
    client->set_connection_timeout(5, 0);
    client->set_read_timeout(600, 0);
    client->set_write_timeout(60, 0);
    client->set_url_encode(false);  // paths are encoded by url_encode() already
    client->set_keep_alive(true);   // cp makes several calls
    // httplib writes a request's headers and body separately: with Nagle on, the body waits for
    // the ACK of the headers, which kilnd delays (delayed ACK): ~40 ms on every POST.
    client->set_tcp_nodelay(true);
    return std::unique_ptr<ApiClient>(new ApiClient(url, parsed.base_path, std::move(client)));
}

ApiClient::ApiClient(std::string url, std::string base_path, std::unique_ptr<httplib::Client> client)
    : m_url(std::move(url)), m_base_path(std::move(base_path)), m_client(std::move(client)) {}

ApiClient::~ApiClient() = default;

void ApiClient::set_read_timeout(int seconds) { m_client->set_read_timeout(seconds, 0); }

Result<json> ApiClient::call(const std::string& method, const std::string& path, const json& body) {
    httplib::Request req;
    req.method = method;
    req.path = m_base_path + path;
    req.set_header("Accept", "application/json");
    if (!body.is_null()) {
        req.body = TRY(dump_json(body));
        req.set_header("Content-Type", "application/json");
    }
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    if (!m_client->send(req, res, err)) return transport_error(m_url, err);
    if (!is_success(res.status)) return api_error(res.status, res.body);
    if (res.status == 204 || res.body.empty()) return json(nullptr);
    json answer = json::parse(res.body, nullptr, false);
    if (answer.is_discarded())
        return local_error(ErrorCode::CliProtocol, method + " " + path + ": kilnd's answer is not JSON");
    return answer;
}

Status ApiClient::stream_ndjson(const std::string& path, const json& body,
                                const std::function<bool(const json& event)>& on_event, const std::string& method) {
    httplib::Request req;
    req.method = method;
    req.path = m_base_path + path;
    if (method != "GET") {
        req.body = TRY(dump_json(body));
        req.set_header("Content-Type", "application/json");
    }
    req.set_header("Accept", "application/x-ndjson");

    int status = 0;
    bool ndjson = false;
    bool stopped = false;  // on_event asked to stop
    std::optional<Error> failure;
    std::string pending;  // an incomplete line, or the whole body of an error answer
    req.response_handler = [&](const httplib::Response& res) {
        status = res.status;
        ndjson = res.get_header_value("Content-Type").rfind("application/x-ndjson", 0) == 0;
        return true;
    };
    req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
        if (!is_success(status) || !ndjson) {
            if (pending.size() < kMaxErrorBody) pending.append(data, std::min(size, kMaxErrorBody - pending.size()));
            return true;
        }
        pending.append(data, size);
        size_t start = 0;
        for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
            std::string_view line(pending.data() + start, nl - start);
            if (line.empty() || line == "\r") continue;
            json event = json::parse(line, nullptr, false);
            if (!event.is_object()) {
                failure = local_error(ErrorCode::CliProtocol, "kilnd sent an exec event that is not a JSON object");
                return false;
            }
            if (!on_event(event)) {
                stopped = true;
                return false;
            }
        }
        pending.erase(0, start);
        if (pending.size() > kMaxNdjsonLine) {
            failure = local_error(ErrorCode::CliProtocol, "kilnd sent an exec event line over 64 MiB");
            return false;
        }
        return true;
    };
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    bool sent = m_client->send(req, res, err);
    if (failure) return *failure;
    if (stopped) return ok_status();
    if (!sent) return transport_error(m_url, err);
    if (!is_success(status)) return api_error(status, pending);
    if (!ndjson)
        return local_error(ErrorCode::CliProtocol, "kilnd did not answer the exec with an NDJSON stream (Content-Type " +
                                           res.get_header_value("Content-Type") + ")");
    if (!pending.empty()) {  // a last line without its newline
        json event = json::parse(pending, nullptr, false);
        if (!event.is_object()) return local_error(ErrorCode::CliProtocol, "kilnd's exec stream ended in the middle of an event");
        on_event(event);
    }
    return ok_status();
}

Status ApiClient::download(const std::string& path, const std::function<bool(const char* data, size_t size)>& sink) {
    int status = 0;
    bool sink_failed = false;
    std::string error_body;
    httplib::Headers headers{{"Accept", "application/octet-stream, application/x-tar, application/json"}};
    auto res = m_client->Get(
        m_base_path + path, headers,
        [&](const httplib::Response& r) {
            status = r.status;
            return true;
        },
        [&](const char* data, size_t size) {
            if (!is_success(status)) {
                if (error_body.size() < kMaxErrorBody) error_body.append(data, size);
                return true;
            }
            if (!sink(data, size)) {
                sink_failed = true;
                return false;
            }
            return true;
        });
    if (sink_failed) return local_error(ErrorCode::CliIo, "could not write what kilnd sent");
    if (!res) return transport_error(m_url, res.error());
    if (!is_success(status)) return api_error(status, error_body);
    return ok_status();
}

Result<json> ApiClient::upload(const std::string& method, const std::string& path, const std::string& content_type,
                               int fd, uint64_t size) {
    std::optional<Error> read_failure;
    httplib::ContentProvider provider = [&](size_t, size_t length, httplib::DataSink& sink) {
        char buf[64 * 1024];
        size_t want = std::min(length, sizeof buf);
        ssize_t n;
        do n = ::read(fd, buf, want);
        while (n < 0 && errno == EINTR);
        if (n <= 0) {
            read_failure = local_error(ErrorCode::CliIo, n < 0 ? std::string("read failed: ") + std::strerror(errno)
                                                   : std::string("the file shrank while it was being sent"));
            return false;
        }
        return sink.write(buf, static_cast<size_t>(n));
    };
    httplib::Headers headers{{"Accept", "application/json"}};
    httplib::Result res = method == "PUT"
                              ? m_client->Put(m_base_path + path, headers, size, provider, content_type)
                              : m_client->Post(m_base_path + path, headers, size, provider, content_type);
    if (read_failure) return *read_failure;
    if (!res) return transport_error(m_url, res.error());
    if (!is_success(res->status)) return api_error(res->status, res->body);
    if (res->body.empty()) return json(nullptr);
    json answer = json::parse(res->body, nullptr, false);
    if (answer.is_discarded()) return local_error(ErrorCode::CliProtocol, method + " " + path + ": kilnd's answer is not JSON");
    return answer;
}

}  // namespace kiln::cli
