// The request and response a route handler of kilnd's API sees. The member names are the ones
// the routes used with cpp-httplib (req.matches, get_header_value, get_param_value, res.status,
// set_content, set_chunked_content_provider...), so that the move to the Beast server
// (connection.h) left the route files as they were. No Boost here: only connection.cpp speaks it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/result.h"
#include "daemon/sandboxes/sandbox_service.h"

namespace kiln::daemon::http {

// Header names compare case-insensitively (RFC 9110 5.1).
struct CaseInsensitiveLess {
    bool operator()(const std::string& a, const std::string& b) const;
};
using Headers = std::multimap<std::string, std::string, CaseInsensitiveLess>;
using Params = std::multimap<std::string, std::string>;

struct Request {
    std::string method;
    std::string path;  // percent-decoded, without the query
    std::string target;  // the request target as sent (path and query, not decoded)
    Headers headers;
    Params params;     // the query, decoded ('+' is a space)
    std::string body;
    std::smatch matches;  // the route's captures over `path`
    std::string request_id;
    // Set for routes that take a bearer token: the server authenticated it from the headers,
    // before it read the body.
    std::optional<Caller> caller;
    // Another host of the fleet forwarded it, signed (fleet_gateway.h): it is handled here, never
    // forwarded again.
    bool forwarded = false;

    bool has_header(const std::string& name) const { return headers.count(name) > 0; }
    std::string get_header_value(const std::string& name) const;
    bool has_param(const std::string& name) const { return params.count(name) > 0; }
    std::string get_param_value(const std::string& name) const;
};

// Where a streamed response's producer puts its bytes. write() returns false once the client is
// gone; done() ends the response (without it, the transfer ends short, which clients see as an
// error). is_writable() is false once the client is gone.
class DataSink {
public:
    std::function<bool(const char* data, size_t size)> write;
    std::function<void()> done;
    std::function<bool()> is_writable;
};

// A producer that may block (on the agent, on a file): it runs on a thread of its own, never on
// the request pool. Called again while it returns true and has not called done(); `offset` is
// the number of bytes written so far.
using ChunkedProvider = std::function<bool(size_t offset, DataSink& sink)>;
// The same with a length known up front (sent with Content-Length).
using SizedProvider = std::function<bool(size_t offset, size_t length, DataSink& sink)>;
// A producer that never blocks, called on the server's event loop: it writes what is ready now
// (write() only queues) and returns; it is called again right after its bytes went out, or after
// a pause (100 ms, growing to 500 ms) when it wrote nothing. For tails of files (a job's log).
using TailProvider = std::function<bool(DataSink& sink)>;

struct Response {
    enum class Stream { None, Chunked, Sized, Tail };

    int status = 200;
    Headers headers;
    std::string body;
    std::string content_type;
    std::string request_id;  // the request's, for error bodies (route_context.h send_error)

    Stream stream = Stream::None;
    ChunkedProvider chunked_provider;
    SizedProvider sized_provider;
    size_t sized_length = 0;
    TailProvider tail_provider;

    void set_header(const std::string& name, const std::string& value) { headers.emplace(name, value); }
    void set_content(std::string content, const std::string& type) {
        body = std::move(content);
        content_type = type;
    }
    void set_chunked_content_provider(const std::string& type, ChunkedProvider provider);
    void set_content_provider(size_t length, const std::string& type, SizedProvider provider);
    void set_tail_content_provider(const std::string& type, TailProvider provider);
};

// A route's handler. `authenticated`: the server checks the bearer token from the headers before
// it reads any body, and a request without a valid one costs no body read (401).
struct Handler {
    std::function<void(const Request&, Response&)> fn;
    bool authenticated = false;
    // For authenticated routes: whether the caller may make this call at all (its scopes),
    // checked with the token, before the body is read. Empty: any caller.
    std::function<Status(const Caller&)> admits;

    Handler() = default;
    template <typename F, typename = std::enable_if_t<std::is_invocable_v<F, const Request&, Response&>>>
    Handler(F f) : fn(std::move(f)) {}  // NOLINT: implicit, as httplib's Handler was
    Handler(std::function<void(const Request&, Response&)> f, bool needs_token)
        : fn(std::move(f)), authenticated(needs_token) {}
};

// "%2F" -> "/"; with `plus_is_space` (query strings), '+' -> ' '. Bad escapes stay as they are.
std::string percent_decode(std::string_view text, bool plus_is_space);
// "a=1&b=x%20y" -> {a:1, b:"x y"}.
Params parse_query(std::string_view query);

}  // namespace kiln::daemon::http
