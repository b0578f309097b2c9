// Route table; see router.h.
#include "kilnd/http/router.h"

namespace kiln::daemon::http {

void Router::add(const char* method, const std::string& pattern, Handler handler, size_t max_body) {
    m_routes.push_back(Route{method, pattern, std::regex(pattern), std::move(handler),
                             max_body ? max_body : m_default_max_body, false});
}

void Router::GetOnEventLoop(const std::string& pattern, Handler handler) {
    add("GET", pattern, std::move(handler), 0);
    m_routes.back().on_event_loop = true;
}

const Route* Router::match(const std::string& method, const std::string& path, std::smatch& matches) const {
    for (const auto& route : m_routes) {
        if (route.method != method) continue;
        if (std::regex_match(path, matches, route.regex)) return &route;
    }
    matches = std::smatch();
    return nullptr;
}

}  // namespace kiln::daemon::http
