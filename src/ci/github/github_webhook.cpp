// The GitHub webhook flow (see github_webhook.h).
#include "ci/github/github_webhook.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <deque>
#include <mutex>
#include <set>
#include <optional>

#include "base/db.h"
#include "base/json_log.h"
#include "base/sha256.h"
#include "ci/github/delivery_log.h"
#include "ci/github/status_poster.h"
#include "ci/github/webhook_event.h"
#include "ci/github/webhook_signature.h"
#include "daemon/api_error.h"

namespace kiln::ci::github {
using nlohmann::json;

namespace {

// The API's error body, with the status and code daemon::to_api_error() gives every other route.
WebhookResponse error_response(const Error& error) {
    daemon::ApiError api = daemon::to_api_error(error);
    return {api.http_status, json{{"error", {{"code", code_name(api.code)}, {"message", api.message}}}}};
}

WebhookResponse result(int status, bool accepted, const std::string& reason) {
    return {status, json{{"accepted", accepted}, {"reason", reason}}};
}

// GitHub's delivery ids are GUIDs; anything else is refused before it reaches the database.
bool plausible_delivery(const std::string& id) {
    if (id.empty() || id.size() > 64) return false;
    for (char c : id)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) return false;
    return true;
}

std::string lowercase(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// repository.full_name of a body whose signature is not checked yet, lowercase; "" when it has
// none. Used only to choose the secret the signature must match: nothing else is read before.
std::string unverified_repository(std::string_view body) {
    json doc = json::parse(body, nullptr, false);
    if (!doc.is_object()) return "";
    auto repo = doc.find("repository");
    if (repo == doc.end() || !repo->is_object()) return "";
    auto name = repo->find("full_name");
    if (name == repo->end() || !name->is_string()) return "";
    return lowercase(name->get<std::string>());
}

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

JobSpec job_spec(const WebhookEvent& ev, const WebhookRequest& req) {
    JobSpec spec;
    spec.repo = ev.clone_url;
    spec.sha = ev.sha;
    spec.trusted = ev.trusted;
    spec.source = "github";
    spec.labels[kLabelDelivery] = req.delivery;
    // One pipeline per delivery however many hosts submit it (the store's unique submit_key).
    spec.submit_key = "github-delivery:" + req.delivery;
    spec.labels["github_event"] = req.event;
    spec.labels[kLabelRepo] = ev.repo_full_name;
    if (!ev.ref.empty()) spec.labels["github_ref"] = ev.ref;
    if (!ev.sender.empty()) spec.labels["github_sender"] = ev.sender;
    if (ev.kind == EventKind::PullRequest) {
        spec.labels["github_pr"] = std::to_string(ev.pr_number);
        spec.labels["github_action"] = ev.action;
        if (!ev.head_repo_full_name.empty()) spec.labels["github_head_repo"] = ev.head_repo_full_name;
    }
    if (!ev.trusted) {
        // No secrets (spec.secrets stays empty, and the worker gives none to an untrusted job) and
        // a network that reaches the git host only, so the clone inside the VM still works.
        spec.labels[kLabelNetwork] = "restricted";
        spec.labels[kLabelAllowHosts] = ev.git_host;
        spec.labels["untrusted_reason"] = ev.untrusted_reason;
    }
    return spec;
}

// The jobs and pipelines whose final status was posted (the most recent ones; each ends once).
// Each job and each pipeline has a context of its own, so its id stands for its context.
class FinishedStatuses {
public:
    // False when a status for `id` must not be posted: it is pending and `id` has ended.
    bool admit(const std::string& id, bool final_state) {
        std::lock_guard lock(m_mutex);
        if (m_ids.count(id)) return false;
        if (!final_state) return true;
        m_ids.insert(id);
        m_order.push_back(id);
        if (m_order.size() > 4096) {
            m_ids.erase(m_order.front());
            m_order.pop_front();
        }
        return true;
    }

private:
    std::mutex m_mutex;
    std::set<std::string> m_ids;
    std::deque<std::string> m_order;
};

}  // namespace

std::vector<std::string> parse_repo_allowlist(const std::string& text) {
    std::vector<std::string> out;
    for (size_t pos = 0; pos <= text.size();) {
        size_t comma = std::min(text.find(',', pos), text.size());
        std::string entry = text.substr(pos, comma - pos);
        entry.erase(0, entry.find_first_not_of(" \t"));
        entry.erase(entry.find_last_not_of(" \t") + 1);
        if (!entry.empty()) out.push_back(lowercase(entry));
        pos = comma + 1;
    }
    return out;
}

bool repo_allowed(const std::vector<std::string>& allowlist, const std::string& full_name) {
    if (allowlist.empty()) return true;
    const std::string name = lowercase(full_name);
    const std::string owner = name.substr(0, name.find('/'));
    for (const auto& entry : allowlist)
        if (entry == name || entry == owner + "/*") return true;
    return false;
}

namespace {
std::string api_url(const std::string& public_url, const std::string& path) {
    std::string base = public_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    return base + path;
}
}  // namespace

std::string job_url(const std::string& public_url, const std::string& job_id) {
    return api_url(public_url, "/ui/jobs/" + job_id);  // the dashboard's page (signing in first if need be)
}

std::string pipeline_url(const std::string& public_url, const std::string& pipeline_id) {
    return api_url(public_url, "/ui/pipelines/" + pipeline_id);
}

std::string job_context(const JobInfo& info) { return std::string(kPipelineContext) + "/" + info.name; }

std::string pipeline_counts(const PipelineInfo& info) {
    size_t passed = 0, failed = 0, skipped = 0, errored = 0, cancelled = 0, unfinished = 0;
    for (const auto& j : info.jobs) {
        switch (j.state) {
            case JobState::Passed: ++passed; break;
            case JobState::Failed: ++failed; break;
            case JobState::Skipped: ++skipped; break;
            case JobState::Error: ++errored; break;
            case JobState::Cancelled: ++cancelled; break;
            case JobState::Queued:
            case JobState::Running:
            case JobState::Waiting: ++unfinished; break;
        }
    }
    std::string out = std::to_string(passed) + " of " + std::to_string(info.jobs.size()) +
                      (info.jobs.size() == 1 ? " job" : " jobs") + " passed";
    for (auto [n, what] : {std::pair{failed, "failed"}, {errored, "errored"}, {skipped, "skipped"},
                           {cancelled, "cancelled"}, {unfinished, "not done"}})
        if (n) out += ", " + std::to_string(n) + " " + what;
    return out;
}

std::optional<StatusFor> status_for_pipeline(const PipelineInfo& info) {
    // Before planning the pipeline has no jobs to count.
    auto counts = [&info]() { return info.jobs.empty() ? std::string() : ": " + pipeline_counts(info); };
    switch (info.state) {
        case PipelineState::Queued:
            return StatusFor{"pending", info.spec.trusted ? "queued in kiln" : "queued in kiln (untrusted: no secrets)"};
        case PipelineState::Running: return StatusFor{"pending", "running" + counts()};
        case PipelineState::Passed: return StatusFor{"success", "passed" + counts()};
        case PipelineState::Failed: return StatusFor{"failure", "failed" + counts()};
        case PipelineState::Error:
            return StatusFor{"error", "kiln error" + (info.error.empty() ? counts() : ": " + info.error)};
        case PipelineState::Cancelled: return StatusFor{"error", "cancelled" + counts()};
    }
    return std::nullopt;
}

std::optional<StatusFor> status_for_job(const JobInfo& info) {
    auto tests = [&info]() -> std::string {
        if (!info.junit) return "";
        return ": " + std::to_string(info.junit->tests) + " tests, " + std::to_string(info.junit->failures) +
               " failures, " + std::to_string(info.junit->errors) + " errors";
    };
    switch (info.state) {
        case JobState::Queued:
            if (info.attempts > 0) return StatusFor{"pending", "queued again after an infrastructure error"};
            return StatusFor{"pending", info.spec.trusted ? "queued in kiln" : "queued in kiln (untrusted: no secrets)"};
        case JobState::Running: return StatusFor{"pending", "running in a fresh kiln VM"};
        case JobState::Waiting: return StatusFor{"pending", "waiting for the jobs it needs"};
        // The queue's reason reads "skipped: it needs ..., which did not pass".
        case JobState::Skipped: return StatusFor{"error", info.error.empty() ? "skipped" : info.error};
        case JobState::Passed: return StatusFor{"success", "passed" + tests()};
        case JobState::Failed: return StatusFor{"failure", "failed" + tests()};
        case JobState::Error: return StatusFor{"error", "kiln error" + (info.error.empty() ? "" : ": " + info.error)};
        case JobState::Cancelled: return StatusFor{"error", "cancelled"};
    }
    return std::nullopt;
}

GithubWebhook::GithubWebhook(GithubConfig config, JobService& jobs, std::unique_ptr<DeliveryLog> deliveries,
                             std::shared_ptr<StatusPoster> poster)
    : m_config(std::move(config)), m_jobs(jobs), m_deliveries(std::move(deliveries)), m_poster(std::move(poster)) {}

GithubWebhook::~GithubWebhook() = default;

Result<std::unique_ptr<GithubWebhook>> GithubWebhook::create(GithubConfig config, JobService& jobs,
                                                             std::unique_ptr<DeliveryLog> deliveries) {
    auto poster = std::make_shared<StatusPoster>(config.api_url, config.token);
    if (config.token.empty()) log::info("github: no github_token configured; commit statuses are not posted", {});
    // The listeners own what they use: they may run on a worker thread at any time. The queue
    // calls them for every state change, the submission (queued) included, in order per job and
    // per pipeline; `finished` keeps a late "pending" from a racing thread from overwriting a
    // final status (per context: a job's or the pipeline's).
    auto finished = std::make_shared<FinishedStatuses>();
    // The status of a job or pipeline (`id`, its `spec` and resolved `sha`) under `context`: for
    // webhook submissions only (they name the repository), never a pending after a final one.
    auto post = [poster, finished](const std::string& id, const JobSpec& spec, const std::string& sha,
                                   const std::optional<StatusFor>& status, std::string target_url, std::string context) {
        auto repo = spec.labels.find(kLabelRepo);
        if (spec.source != "github" || repo == spec.labels.end() || !status) return;
        if (!finished->admit(id, status->state != "pending")) return;
        poster->post_async(CommitStatus{repo->second, sha.empty() ? spec.sha : sha, status->state, std::move(target_url),
                                        status->description, std::move(context)});
    };
    jobs.on_state_change([post, public_url = config.public_url](const JobInfo& info) {
        if (info.name.empty()) return;  // the first job, before the pipeline is planned: no context yet
        post(info.id, info.spec, info.sha, status_for_job(info), job_url(public_url, info.id), job_context(info));
    });
    jobs.on_pipeline_change([post, public_url = config.public_url](const PipelineInfo& info) {
        post(info.id, info.spec, info.sha, status_for_pipeline(info), pipeline_url(public_url, info.id), kPipelineContext);
    });
    return std::unique_ptr<GithubWebhook>(
        new GithubWebhook(std::move(config), jobs, std::move(deliveries), std::move(poster)));
}

WebhookResponse GithubWebhook::handle(const WebhookRequest& req) {
    if (m_config.webhook_secret.empty() && m_config.repo_webhook_secrets.empty())
        return error_response(make_error(ErrorCode::Unavailable, "the GitHub webhook is not configured (github_webhook_secret)"));
    if (req.signature.empty())
        return error_response(make_error(ErrorCode::Unauthorized, "an X-Hub-Signature-256 header is required"));
    // A repository with its own secret verifies against it alone (the global one would let any
    // holder of it speak for that repository); the others against the global secret. The body is
    // read unverified only to choose which: nothing else of it counts until the signature matches.
    const std::string repository = unverified_repository(req.body);
    auto own = m_config.repo_webhook_secrets.find(repository);
    const std::string& secret = own != m_config.repo_webhook_secrets.end() ? own->second : m_config.webhook_secret;
    if (!verify_signature(secret, req.body, req.signature))
        return error_response(make_error(ErrorCode::Unauthorized, "X-Hub-Signature-256 does not match the body"));
    if (req.event.empty()) return error_response(make_error(ErrorCode::InvalidArgument, "an X-GitHub-Event header is required"));
    if (!plausible_delivery(req.delivery))
        return error_response(make_error(ErrorCode::InvalidArgument, "X-GitHub-Delivery is missing or not a delivery id"));
    // Signed, so the repository is the sender's: refused when it is not on github_repos.
    if (!repository.empty() && !repo_allowed(m_config.repos, repository))
        return error_response(make_error(ErrorCode::Forbidden, "repository " + repository.substr(0, 200) +
                                                                   " is not on this kilnd's github_repos"));

    auto parsed = parse_webhook_event(req.event, req.body);
    if (!parsed.ok()) return error_response(make_error(ErrorCode::InvalidArgument, parsed.error().message));
    const WebhookEvent& ev = *parsed;
    if (ev.kind == EventKind::Ping) return result(200, false, "pong");
    if (ev.kind == EventKind::Ignored) return result(202, false, ev.reason);
    // The secret and the allowlist were chosen by the name read above: the event must be that one's.
    if (lowercase(ev.repo_full_name) != repository)
        return error_response(make_error(ErrorCode::InvalidArgument, "repository.full_name is ambiguous in the body"));

    auto claim = m_deliveries->claim(req.delivery, req.event, sha256_hex(std::string(req.body)), now_ms());
    if (!claim.ok()) return error_response(store_error(claim.error()));  // down: 503, GitHub redelivers
    // The same delivery id with no job recorded yet: the host that recorded it first is still
    // submitting, or died before it could. Submitted here too: the delivery's submit_key makes the
    // store keep one pipeline, so either way the delivery has exactly one job (a redelivery after
    // a crash makes the job the crash lost).
    const bool in_flight = !claim->first && claim->first_delivery == req.delivery && claim->job_id.empty();
    if (!claim->first && !in_flight) {
        WebhookResponse r = result(200, false, claim->first_delivery == req.delivery
                                                   ? "delivery " + req.delivery + " was handled already"
                                                   : "this body was delivered before, as delivery " + claim->first_delivery);
        r.body["duplicate"] = true;
        if (!claim->job_id.empty()) r.body["job_id"] = claim->job_id;
        return r;
    }

    auto job = m_jobs.submit(job_spec(ev, req));
    if (!job.ok()) {
        // Forget the delivery so that GitHub's redelivery of it can still make the job.
        if (claim->first) (void)m_deliveries->release(req.delivery);
        log::warn("github: job not submitted", {{"delivery", req.delivery}, {"error", job.error().to_string()}});
        // The route's contract (api/openapi.yaml) answers the sender's mistakes and the service's
        // limits as themselves; anything else is kilnd's own failure: a plain 500 internal.
        ErrorCode c = job.error().code;
        bool passed_on = c == ErrorCode::InvalidArgument || c == ErrorCode::QuotaExceeded || c == ErrorCode::Unavailable ||
                         c == ErrorCode::Forbidden;  // a repository outside ci_repos
        return error_response(make_error(passed_on ? c : ErrorCode::Internal, "the job could not be queued: " + job.error().message));
    }
    if (auto st = m_deliveries->set_job(req.delivery, job->id); !st.ok())
        log::warn("github: delivery log", {{"delivery", req.delivery}, {"error", st.error().message}});
    if (in_flight) {
        WebhookResponse r = result(200, false, "delivery " + req.delivery + " was handled already");
        r.body["duplicate"] = true;
        r.body["job_id"] = job->id;
        return r;
    }
    log::info("github: job queued", {{"delivery", req.delivery}, {"event", req.event}, {"repo", ev.repo_full_name},
                                     {"sha", ev.sha}, {"job", job->id}, {"pipeline", job->pipeline_id}, {"trusted", ev.trusted}});
    WebhookResponse r = result(201, true, ev.trusted ? "job queued" : "job queued untrusted: " + ev.untrusted_reason);
    r.body["job_id"] = job->id;
    r.body["pipeline_id"] = job->pipeline_id;
    r.body["trusted"] = ev.trusted;
    return r;
}

}  // namespace kiln::ci::github
