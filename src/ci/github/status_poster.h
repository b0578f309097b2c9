// StatusPoster: posts commit statuses (POST {api}/repos/{owner}/{repo}/statuses/{sha}) in the
// background, in order, so a slow or unreachable GitHub never delays a webhook answer or a worker.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "base/result.h"

namespace kiln::ci::github {

struct CommitStatus {
    std::string repo_full_name;  // owner/name (validated by the payload parser)
    std::string sha;
    std::string state;  // pending | success | failure | error
    std::string target_url;
    std::string description;  // cut to GitHub's 140 characters
    std::string context = "kiln";
};

class StatusPoster {
public:
    // `api_url`: scheme://host[:port][/path prefix]. An empty token: nothing is posted (logged once).
    StatusPoster(std::string api_url, std::string token);
    ~StatusPoster();  // posts what is queued for up to 10 s more, then stops

    void post_async(CommitStatus status);
    // One POST now; an error says what GitHub (or the network) answered.
    Status post(const CommitStatus& status);

private:
    void run();

    std::string m_api_url;
    std::string m_token;
    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<CommitStatus> m_queue;
    bool m_stopping = false;
    std::chrono::steady_clock::time_point m_stop_deadline;
    std::thread m_thread;
};

}  // namespace kiln::ci::github
