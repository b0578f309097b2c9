// Commit statuses over HTTP(S) with cpp-httplib (see status_poster.h).
#include "ci/github/status_poster.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "base/json_log.h"

namespace kiln::ci::github {

StatusPoster::StatusPoster(std::string api_url, std::string token)
    : m_api_url(std::move(api_url)), m_token(std::move(token)) {
    while (!m_api_url.empty() && m_api_url.back() == '/') m_api_url.pop_back();
    m_thread = std::thread([this] { run(); });
}

StatusPoster::~StatusPoster() {
    {
        std::lock_guard lock(m_mutex);
        m_stopping = true;
        m_stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    }
    m_cv.notify_all();
    m_thread.join();
}

void StatusPoster::post_async(CommitStatus status) {
    {
        std::lock_guard lock(m_mutex);
        m_queue.push_back(std::move(status));
    }
    m_cv.notify_all();
}

void StatusPoster::run() {
    for (;;) {
        CommitStatus next;
        {
            std::unique_lock lock(m_mutex);
            m_cv.wait(lock, [this] { return m_stopping || !m_queue.empty(); });
            if (m_queue.empty()) return;
            // Stopping: what is queued gets a bounded time, so an unreachable GitHub cannot hold
            // kilnd's shutdown.
            if (m_stopping && std::chrono::steady_clock::now() > m_stop_deadline) {
                log::warn("github statuses dropped at shutdown", {{"count", m_queue.size()}});
                return;
            }
            next = std::move(m_queue.front());
            m_queue.pop_front();
        }
        // One retry: a status lost to a network blip would leave the PR pending forever.
        Status st = post(next);
        if (!st.ok()) st = post(next);
        if (!st.ok())
            log::warn("github status not posted", {{"repo", next.repo_full_name}, {"sha", next.sha},
                                                    {"state", next.state}, {"error", st.error().message}});
    }
}

Status StatusPoster::post(const CommitStatus& s) {
    if (m_token.empty()) return make_error(ErrorCode::Unavailable, "no GitHub token configured (github_token)");
    auto scheme = m_api_url.find("://");
    if (scheme == std::string::npos) return make_error(ErrorCode::InvalidArgument, "github_api_url has no scheme: " + m_api_url);
    auto path_start = m_api_url.find('/', scheme + 3);
    std::string origin = m_api_url.substr(0, path_start);
    std::string prefix = path_start == std::string::npos ? "" : m_api_url.substr(path_start);

    httplib::Client client(origin);
    if (!client.is_valid()) return make_error(ErrorCode::InvalidArgument, "github_api_url is not usable: " + m_api_url);
    client.set_connection_timeout(10, 0);
    client.set_read_timeout(20, 0);
    client.set_write_timeout(20, 0);
    httplib::Headers headers = {{"Authorization", "Bearer " + m_token},
                                {"Accept", "application/vnd.github+json"},
                                {"X-GitHub-Api-Version", "2022-11-28"},
                                {"User-Agent", "kiln"}};
    nlohmann::json body = {{"state", s.state},
                           {"target_url", s.target_url},
                           {"description", s.description.substr(0, 140)},
                           {"context", s.context}};
    std::string path = prefix + "/repos/" + s.repo_full_name + "/statuses/" + s.sha;
    auto res = client.Post(path, headers, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                           "application/json");
    if (!res) return make_error(ErrorCode::Unavailable, "POST " + path + ": " + httplib::to_string(res.error()));
    if (res->status != 201 && res->status != 200)
        return make_error(ErrorCode::Unavailable, "POST " + path + " answered " + std::to_string(res->status) + ": " +
                                             res->body.substr(0, 200));
    return ok_status();
}

}  // namespace kiln::ci::github
