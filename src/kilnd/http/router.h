// The route table of kilnd's API: method + path regex -> handler, with each route's body limit,
// which the server checks before it reads a body (from Content-Length, or as chunks arrive).
#pragma once

#include <cstddef>
#include <regex>
#include <string>
#include <vector>

#include "kilnd/http/http_message.h"

namespace kiln::daemon::http {

struct Route {
    std::string method;
    std::string pattern;
    std::regex regex;
    Handler handler;
    size_t max_body = 0;
    // Answered on the event loop, never queued behind the request pool: only for handlers that
    // cannot block (/healthz).
    bool on_event_loop = false;
};

class Router {
public:
    // `default_max_body`: the body limit of routes registered without one (the JSON limit).
    explicit Router(size_t default_max_body) : m_default_max_body(default_max_body) {}

    // `max_body` 0: the default limit.
    void Get(const std::string& pattern, Handler handler, size_t max_body = 0) { add("GET", pattern, std::move(handler), max_body); }
    void Post(const std::string& pattern, Handler handler, size_t max_body = 0) { add("POST", pattern, std::move(handler), max_body); }
    void Put(const std::string& pattern, Handler handler, size_t max_body = 0) { add("PUT", pattern, std::move(handler), max_body); }
    void Patch(const std::string& pattern, Handler handler, size_t max_body = 0) { add("PATCH", pattern, std::move(handler), max_body); }
    void Delete(const std::string& pattern, Handler handler, size_t max_body = 0) { add("DELETE", pattern, std::move(handler), max_body); }
    void GetOnEventLoop(const std::string& pattern, Handler handler);

    // The first route (in the order added) whose method is `method` and whose regex matches all of
    // `path`; null if none. `matches` gets the captures (it refers into `path`, which must outlive it).
    const Route* match(const std::string& method, const std::string& path, std::smatch& matches) const;

    size_t default_max_body() const { return m_default_max_body; }

private:
    void add(const char* method, const std::string& pattern, Handler handler, size_t max_body);

    size_t m_default_max_body;
    std::vector<Route> m_routes;
};

}  // namespace kiln::daemon::http
