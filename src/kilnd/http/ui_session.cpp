// The dashboard's session cookie in the HTTP layer; see ui_session.h.
#include "kilnd/http/ui_session.h"

#include <openssl/crypto.h>
#include <strings.h>

namespace kiln::daemon::http {
namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// "https://host:port/path" -> "https://host:port" (lowercased scheme and host); "" if not a URL.
std::string origin_of(std::string_view url) {
    size_t scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos) return "";
    size_t host_end = url.find_first_of("/?#", scheme_end + 3);
    std::string out(url.substr(0, host_end));
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool changes_state(const std::string& method) { return method != "GET" && method != "HEAD"; }

}  // namespace

std::optional<std::string> cookie_value(const Request& req, const std::string& name) {
    auto [begin, end] = req.headers.equal_range("Cookie");
    for (auto it = begin; it != end; ++it) {
        std::string_view rest = it->second;
        while (!rest.empty()) {
            size_t semi = rest.find(';');
            std::string_view pair = trim(rest.substr(0, semi));
            rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
            size_t eq = pair.find('=');
            if (eq == std::string_view::npos) continue;
            if (trim(pair.substr(0, eq)) == name) return std::string(trim(pair.substr(eq + 1)));
        }
    }
    return std::nullopt;
}

bool from_own_origin(const Request& req, const std::string& public_url) {
    if (strcasecmp(req.get_header_value("Sec-Fetch-Site").c_str(), "cross-site") == 0) return false;
    std::string origin = req.get_header_value("Origin");
    if (origin.empty()) origin = origin_of(req.get_header_value("Referer"));
    if (origin.empty()) return true;  // not a browser's request: the CSRF token is what counts
    origin = origin_of(origin);
    std::string host = req.get_header_value("Host");
    for (auto& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!host.empty() && (origin == "http://" + host || origin == "https://" + host)) return true;
    return !public_url.empty() && origin == origin_of(public_url);
}

Result<Caller> authenticate_cookie(Authenticator& auth, const Request& req, const std::string& public_url) {
    auto id = cookie_value(req, kSessionCookie);
    if (!id) return make_error(ErrorCode::Unauthorized, "an Authorization: Bearer <token> header is required");
    SessionCaller session = TRY(auth.authenticate_session(*id));
    if (!from_own_origin(req, public_url))
        return make_error(ErrorCode::Forbidden, "a request from another site may not use the dashboard's session");
    if (changes_state(req.method)) {
        std::string presented = req.get_header_value(kCsrfHeader);
        if (presented.size() != session.csrf.size() ||
            CRYPTO_memcmp(presented.data(), session.csrf.data(), presented.size()) != 0)
            return make_error(ErrorCode::Forbidden, std::string("a request that changes state with the session cookie must carry "
                                                                "its CSRF token in ") + kCsrfHeader);
    }
    return std::move(session.caller);
}

std::string session_cookie(const std::string& id, int64_t max_age_seconds, bool secure) {
    std::string cookie = std::string(kSessionCookie) + "=" + id + "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" +
                         std::to_string(id.empty() ? 0 : max_age_seconds);
    if (secure) cookie += "; Secure";
    return cookie;
}

}  // namespace kiln::daemon::http
