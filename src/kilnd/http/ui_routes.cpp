// /ui/: the dashboard (docs/dashboard.md). Its pages are files of ui/ compiled into kilnd
// (ui_assets.h); the pages are one HTML shell whose JavaScript modules draw every view from the
// API. Here: serving those files with strict headers, and signing in and out (ui_session.h).
#include "base/clock.h"
#include "daemon/auth/session_store.h"
#include "kilnd/http/route_context.h"
#include "kilnd/http/ui_assets.h"
#include "kilnd/http/ui_session.h"

namespace kiln::daemon::http {

namespace {

// No inline script or style, nothing from another origin, no framing, no plugins.
constexpr const char* kPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
constexpr int64_t kYearSeconds = 365 * 86400;

void set_page_headers(Response& res) {
    res.set_header("Content-Security-Policy", kPolicy);
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("X-Frame-Options", "DENY");
    res.set_header("Referrer-Policy", "same-origin");
}

// The shell for every page path: its asset URLs name this build (content-hashed, cached forever);
// the shell itself is never cached, so a new kilnd's pages load its own files.
void send_shell(Response& res) {
    const UiAssetSet& set = ui_assets();
    const UiAsset* index = set.find("index.html");
    if (!index) return send_error(res, make_error(ErrorCode::NotFound, "this kilnd was built without the dashboard"));
    std::string html(reinterpret_cast<const char*>(index->data), index->size);
    static const std::string kMark = "{{BUILD}}";
    for (size_t at = html.find(kMark); at != std::string::npos; at = html.find(kMark, at)) html.replace(at, kMark.size(), set.build);
    res.status = 200;
    set_page_headers(res);
    res.set_header("Cache-Control", "no-store");
    res.set_content(std::move(html), index->content_type);
}

bool secure_cookie(const RouteContext& ctx) { return ctx.config.public_url.rfind("https://", 0) == 0; }

json session_json(const Caller& caller, const std::string& csrf, int64_t expires_at_ms) {
    return json{{"signed_in", true},
                {"csrf", csrf},
                {"expires_at", rfc3339_ms(expires_at_ms)},
                {"token", {{"id", caller.token_id}, {"name", caller.token_name}, {"scopes", scope_names(caller.scopes)}}}};
}

}  // namespace

void add_ui_routes(Router& server, RouteContext& ctx) {
    server.Get("/ui", [](const Request&, Response& res) {
        res.status = 308;
        res.set_header("Location", "/ui/");
    });

    // Files of this build by their path under ui/: never a file of the host, only the table.
    server.Get("/ui/a/([0-9a-f]{16})/(.+)", [](const Request& req, Response& res) {
        const UiAssetSet& set = ui_assets();
        const UiAsset* asset = req.matches[1].str() == set.build ? set.find(req.matches[2].str()) : nullptr;
        set_page_headers(res);
        if (!asset) return send_error(res, make_error(ErrorCode::NotFound, "no such file of the dashboard (an older kilnd's?)"));
        std::string etag = std::string("\"") + asset->sha256 + "\"";
        res.set_header("ETag", etag);
        res.set_header("Cache-Control", "public, max-age=" + std::to_string(kYearSeconds) + ", immutable");
        if (req.get_header_value("If-None-Match") == etag) {
            res.status = 304;
            return;
        }
        res.status = 200;
        res.set_content(std::string(reinterpret_cast<const char*>(asset->data), asset->size), asset->content_type);
    });

    // Browsers ask for it on any page, the API's JSON answers included.
    server.Get("/favicon.ico", [](const Request&, Response& res) {
        const UiAsset* icon = ui_assets().find("favicon.svg");
        if (!icon) return send_error(res, make_error(ErrorCode::NotFound, "no icon"));
        set_page_headers(res);
        res.set_header("Cache-Control", "public, max-age=86400");
        res.status = 200;
        res.set_content(std::string(reinterpret_cast<const char*>(icon->data), icon->size), icon->content_type);
    });

    // Sign in: a token for a session cookie. Anyone may try; only kilnd's own pages may (Origin).
    server.Post("/ui/session", [&ctx](const Request& req, Response& res) {
        set_page_headers(res);
        res.set_header("Cache-Control", "no-store");
        if (!from_own_origin(req, ctx.config.public_url))
            return send_error(res, make_error(ErrorCode::Forbidden, "sign-in is only accepted from kilnd's own pages"));
        json doc = json::parse(req.body, nullptr, false);
        if (doc.is_discarded() || !doc.is_object() || !doc.contains("token") || !doc["token"].is_string())
            return send_error(res, make_error(ErrorCode::MalformedBody, "the body must be a JSON object {\"token\": \"kiln_...\"}"));
        SessionStore* sessions = ctx.config.sessions;
        if (!sessions) return send_error(res, make_error(ErrorCode::Unavailable, "this kilnd keeps no dashboard sessions"));
        auto made = sessions->create(doc["token"].get<std::string>(), now_unix_ms());
        if (!made.ok()) return send_error(res, made.error());
        int64_t max_age = std::max<int64_t>(1, (made->expires_at_ms - now_unix_ms()) / 1000);
        res.set_header("Set-Cookie", session_cookie(made->id, max_age, secure_cookie(ctx)));
        send_json(res, 201, session_json(made->caller, made->csrf, made->expires_at_ms));
    }, 4096);

    // Who is signed in, and the CSRF token the pages send back (readable only by kilnd's own
    // pages: no other origin may read this answer). Signed out is an answer, not an error, so
    // that opening the dashboard logs no failed request.
    server.Get("/ui/session", [&ctx](const Request& req, Response& res) {
        set_page_headers(res);
        res.set_header("Cache-Control", "no-store");
        const json signed_out{{"signed_in", false}};
        auto id = cookie_value(req, kSessionCookie);
        if (!id) return send_json(res, 200, signed_out);
        auto session = ctx.auth.authenticate_session(*id);
        if (session.ok()) return send_json(res, 200, session_json(session->caller, session->csrf, session->expires_at_ms));
        if (session.error().code == ErrorCode::Unauthorized) return send_json(res, 200, signed_out);  // ended, expired, revoked
        send_error(res, session.error());
    });

    // Sign out: the session ends on the server; the cookie is cleared (a copy kept elsewhere no
    // longer works either). State-changing: the cookie's CSRF check applies.
    server.Delete("/ui/session", authed(ctx, [&ctx](const Caller&, const Request& req, Response& res) {
        set_page_headers(res);
        SessionStore* sessions = ctx.config.sessions;
        auto id = cookie_value(req, kSessionCookie);
        if (sessions && id)
            if (auto st = sessions->end(*id); !st.ok()) return send_error(res, st.error());
        res.set_header("Set-Cookie", session_cookie("", 0, secure_cookie(ctx)));
        res.status = 204;
    }));

    // Every other path under /ui/ is a page of the dashboard: the shell draws it.
    server.Get("/ui/(.*)", [](const Request&, Response& res) { send_shell(res); });
}

}  // namespace kiln::daemon::http
