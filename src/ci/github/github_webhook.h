// GithubWebhook: POST /v1/ci/github without the HTTP: signature, deduplication, payload, job
// submission, and the commit statuses that follow the pipeline and each of its jobs (pending, then
// success/failure/error).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "ci/github/github_config.h"
#include "ci/jobs/job_service.h"

namespace kiln::ci::github {

class DeliveryLog;
class StatusPoster;

struct WebhookRequest {
    std::string event;      // X-GitHub-Event
    std::string delivery;   // X-GitHub-Delivery
    std::string signature;  // X-Hub-Signature-256
    std::string_view body;  // raw, as signed
};

struct WebhookResponse {
    int status = 200;
    nlohmann::json body;  // an API error object or {accepted, reason, job_id, pipeline_id, trusted, duplicate}
};

// Labels the job gets (JobSpec.labels); the network helper reads the last two.
inline constexpr const char* kLabelDelivery = "github_delivery";
inline constexpr const char* kLabelRepo = "github_repo";
inline constexpr const char* kLabelNetwork = "network";               // "restricted" for untrusted jobs
inline constexpr const char* kLabelAllowHosts = "network_allow_hosts";  // comma-separated hosts (the git host)

class GithubWebhook {
public:
    // Keeps the delivery log (kilnd.db's github_deliveries) and listens to `jobs` for status
    // changes. The listener holds what it needs itself, so `jobs` may outlive this object.
    static Result<std::unique_ptr<GithubWebhook>> create(GithubConfig config, JobService& jobs,
                                                         std::unique_ptr<DeliveryLog> deliveries);
    ~GithubWebhook();

    WebhookResponse handle(const WebhookRequest& request);

private:
    GithubWebhook(GithubConfig config, JobService& jobs, std::unique_ptr<DeliveryLog> deliveries,
                  std::shared_ptr<StatusPoster> poster);

    GithubConfig m_config;
    JobService& m_jobs;
    std::unique_ptr<DeliveryLog> m_deliveries;
    std::shared_ptr<StatusPoster> m_poster;
};

// The status GitHub shows for a job in `info`'s state; nullopt when none is due (queued).
struct StatusFor {
    std::string state, description;
};
std::optional<StatusFor> status_for_job(const JobInfo& info);
// The pipeline's status for `info`'s state, its description counting the jobs ("passed: 3 of 4
// jobs passed, 1 skipped").
std::optional<StatusFor> status_for_pipeline(const PipelineInfo& info);
// "3 of 4 jobs passed, 1 skipped": the jobs by state (those not ended as "not done").
std::string pipeline_counts(const PipelineInfo& info);
// The "Details" links of statuses: the dashboard's pages, <public_url>/ui/jobs/<id> and
// <public_url>/ui/pipelines/<id> (a person not signed in signs in and lands there).
std::string job_url(const std::string& public_url, const std::string& job_id);
std::string pipeline_url(const std::string& public_url, const std::string& pipeline_id);
// The pipeline's status has the context "kiln"; each (planned, so named) job "kiln/<job name>".
inline constexpr const char* kPipelineContext = "kiln";
std::string job_context(const JobInfo& info);

}  // namespace kiln::ci::github
