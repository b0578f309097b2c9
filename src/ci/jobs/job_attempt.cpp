// JobAttempt: one attempt of a job in a fresh VM, phase by phase (see job_attempt.h and docs/ci.md).
#include "ci/jobs/job_attempt.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/json_log.h"
#include "base/sha256.h"
#include "base/unique_fd.h"
#include "ci/jobs/canonical_repo.h"
#include "ci/jobs/checkout_listing.h"
#include "ci/jobs/git_source.h"
#include "ci/jobs/glob_match.h"
#include "ci/jobs/job_log.h"
#include "ci/jobs/job_store.h"
#include "ci/jobs/pipeline_source.h"
#include "ci/jobs/secret_forms.h"
#include "ci/junit/junit_summary.h"
#include "daemon/sandboxes/ids.h"
#include "vm/agent_client.h"

namespace kiln::ci {
namespace {

constexpr const char* kCheckout = "/work/src";
constexpr size_t kMaxJunitBytes = 64ull << 20;
constexpr size_t kMaxArtifacts = 1000;
constexpr size_t kMaxListingBytes = 16 << 20;  // find's output: ~200,000 names
constexpr uint64_t kMaxArtifactBytes = 1ull << 30;  // all of a job's artifacts together
constexpr uint64_t kStepOutputLimit = 4ull << 30;   // the agent's cap; our log has its own, lower
constexpr int64_t kHostGraceMs = 30000;             // past a step's timeout, the host stops waiting

int64_t now_mono() { return monotonic_ms(); }

// The command that checks the commit out in the VM, the tar on its stdin and the SHA as $1. Every
// new program and code path costs ~50-250 ms in a freshly restored TCG guest, so git does as little
// as it can here. A bake's snapshot already holds a checkout with what the bake left beside it:
// there only the objects are added and git moves that checkout to the commit (deleting what the
// commit does not have, unlike an extraction over it).
std::string checkout_script() {
    return "if [ -d " + std::string(kCheckout) + "/.git ]; then"
           "  tar -x -o -f - -C / " + std::string(kCheckout + 1) + "/.git/objects;"  // names in the tar are relative
           "  cd " + kCheckout + ";"
           "  git -c advice.detachedHead=false checkout -q -f --detach \"$1\";"
           " else"
           "  tar -x -m -o -f - -C /;"
           "  cd " + kCheckout + ";"
           // The index's stat data are the host's: refresh them, or plumbing such as
           // `git diff-index HEAD` would call every file changed (-q: exit 0 regardless).
           "  git update-index -q --refresh;"
           " fi;"
           // HEAD must name the commit, and the commit must be readable in the VM's repository.
           " git rev-parse --verify HEAD^{commit}";
}

}  // namespace

JobAttempt::JobAttempt(JobRunner& runner, const JobInfo& job, const Env& spec_secrets, JobLog& log, JobControl& control,
                       const Progress& progress)
    : m_runner(runner),
      m_job(job),
      m_spec_secrets(spec_secrets),
      m_log(log),
      m_control(control),
      m_progress(progress),
      m_job_dir(runner.m_config.jobs_dir + "/" + job.id) {}

JobAttempt::~JobAttempt() { tear_down(); }

// ---- the phases, in the order they run ----------------------------------------------------------

bool JobAttempt::prepare_source() {
    m_log.event({{"type", "attempt"}, {"attempt", m_job.attempts}, {"sha", m_job.sha}, {"repo", m_job.spec.repo}});
    const int64_t host_start = now_mono();  // phase timings go into the log (docs/ci.md's breakdown)
    GitCache& git = m_runner.m_git;
    auto loaded = load_pipeline(git, m_job.spec, m_job.sha);
    if (auto* problem = std::get_if<PipelineLoadError>(&loaded))
        return fail(JobState::Error, problem->message, problem->retryable);
    auto& source = std::get<LoadedPipeline>(loaded);
    m_cache_repo = std::move(source.cache_repo);
    m_def = std::move(source.pipeline.jobs.front());
    // The hard cap covers everything from here: bake, clone, steps, reports.
    m_control.deadline_ms = now_mono() + int64_t(m_def.timeout_seconds) * 1000;
    for (const auto& s : m_def.steps) m_outcome.steps.push_back(StepRecord{s.name, "pending", -1, 0});
    m_progress(m_outcome);

    if (auto st = make_dirs(m_job_dir, 0700); !st.ok()) return fail(JobState::Error, st.error().to_string(), true);
    m_log.event({{"type", "code"}, {"host_ms", now_mono() - host_start}});
    // The checkout's tar is made on another thread while the VM is created and the command that
    // extracts it starts: that command waits on its stdin for the tar.
    m_checkout_tar.emplace(git, m_cache_repo, m_job.sha, m_job_dir);
    return true;
}

void JobAttempt::choose_secrets() {
    // A bake is snapshotted and an untrusted job's code is nobody's: neither gets secrets. A
    // trusted job gets a configured secret only where ci_secrets_policy lets it go (its
    // repository, and branch when the secret names branches); each one withheld is said in the
    // log, with why, never with its value.
    const std::string repository = canonical_repository(m_job.spec);
    const std::string branch = job_branch(m_job.spec);
    for (const auto& name : m_def.secrets) {
        auto withheld = [&](const std::string& reason) {
            m_log.event({{"type", "warning"}, {"secret", name}, {"message", reason}});
        };
        if (!m_job.spec.trusted) {
            withheld("secret " + name + " is withheld: the job is untrusted (queued by a token without ci:trusted, or a "
                                        "fork's pull request)");
            continue;
        }
        if (auto it = m_spec_secrets.find(name); it != m_spec_secrets.end()) {  // the submitter's own value
            m_secret_env[name] = it->second;
            continue;
        }
        auto configured = m_runner.m_config.secrets.find(name);
        if (configured == m_runner.m_config.secrets.end()) {
            withheld("secret " + name + " is not configured on this kilnd");
            continue;
        }
        SecretDecision decision = m_runner.m_config.secret_policy.decide(name, repository, branch);
        if (!decision.allowed) {
            withheld(decision.reason);
            continue;
        }
        m_secret_env[name] = configured->second;
    }
    std::vector<std::string> masked;
    for (const auto& [name, value] : m_secret_env)
        for (auto& form : secret_forms(value)) masked.push_back(std::move(form));
    // Longest first across secrets too: one secret's form may hold another's.
    std::stable_sort(masked.begin(), masked.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    m_log.set_masked(std::move(masked));
}

bool JobAttempt::choose_template() {
    const JobDefinition& p = m_def;
    const std::string repository = canonical_repository(m_job.spec);
    if (!allowed_template(repository)) return false;
    m_template_id = p.template_name;
    m_template_shown = p.template_name;
    if (p.bake) {
        // The repository is part of the key: another repository copying this one's bake section
        // and lockfile gets a bake of its own, never this one's VM. The trust class is too: a bake
        // runs the job's own code and commands, so an untrusted job's bake must never become a
        // trusted job's VM. The policy is too: a bake with a NIC and one without are different
        // device sets (docs/network.md).
        std::string text = (repository.empty() ? "raw:" + m_job.spec.repo : repository) + '\0' + p.template_name + '\0' +
                           p.bake->run + '\0' + (m_job.spec.trusted ? "trusted" : "untrusted") + '\0' +
                           daemon::net::to_json(network()).dump() + '\0';
        for (const auto& f : p.bake->key_files) {
            auto id = m_runner.m_git.blob_id(m_cache_repo, m_job.sha, f);
            if (!id.ok()) return fail(JobState::Error, "hashing " + f + ": " + id.error().message, true);
            text += f + '\0' + (id->empty() ? std::string("(missing)") : *id) + '\n';
        }
        m_outcome.template_key = sha256_hex(text).substr(0, 16);
        // Finding a bake counts as a use of it, so that eviction leaves it to this job's create.
        auto entry = m_runner.m_store.find_bake(m_outcome.template_key, now_unix_ms());
        if (entry.ok() && *entry && m_runner.m_service.get_snapshot(m_runner.m_config.caller, (*entry)->snapshot_id).ok()) {
            m_outcome.bake_hit = true;
            m_template_id = (*entry)->snapshot_id;
            m_template_shown = "the bake " + m_outcome.template_key;  // never the snapshot's id (docs/tenants-ci.md)
        } else if (entry.ok() && *entry) {
            (void)m_runner.m_store.drop_bake(m_outcome.template_key);  // its snapshot is gone: bake again
        }
    } else if (m_template_is_snapshot) {
        m_outcome.template_key = "snapshot-" + sha256_hex(p.template_name).substr(0, 16);
        m_template_shown = "a bake of this repository (" + m_outcome.template_key + ")";
    } else {
        m_outcome.template_key = p.template_name;
    }
    m_log.event({{"type", "template"}, {"template", m_template_is_snapshot ? m_outcome.template_key : p.template_name},
                 {"key", m_outcome.template_key}, {"bake", p.bake ? (m_outcome.bake_hit ? "hit" : "miss") : "none"}});
    return true;
}

bool JobAttempt::allowed_template(const std::string& repository) {
    // A built-in template, or a snapshot that is one of this repository's bakes (its name says
    // whose): never another repository's VM, whose disk holds that repository's checkout. The
    // same answer whether or not such a snapshot exists, so that ids cannot be probed.
    const std::string& name = m_def.template_name;
    auto t = m_runner.m_service.get_template(m_runner.m_config.caller, name);
    if (t.ok() && t->kind == "builtin") return true;
    if (t.ok() && t->kind == "snapshot" && !repository.empty() && t->name.rfind(bake_snapshot_prefix(repository), 0) == 0) {
        m_template_is_snapshot = true;
        return true;
    }
    if (!t.ok() && t.error().code != ErrorCode::NotFound && t.error().code != ErrorCode::TemplateNotFound)
        return fail(JobState::Error, "looking up template " + name + ": " + t.error().message, true);
    return fail(JobState::Error, ".kiln.yml: template: '" + name +
                                     "' is neither a built-in template of this kilnd nor a bake of this repository (" +
                                     (repository.empty() ? m_job.spec.repo : repository) + ")");
}

bool JobAttempt::start_vm() {
    daemon::SandboxService& service = m_runner.m_service;
    daemon::CreateRequest create;
    create.template_id = m_template_id;
    create.ttl_seconds = std::min<int64_t>(m_runner.m_config.max_ttl_seconds, int64_t(m_def.timeout_seconds) + 300);
    create.metadata = {{"ci_job", m_job.id}};
    create.network = network();
    if (m_control.stopped()) return stopped_by_watchdog();
    auto sandbox = service.create(m_runner.m_config.caller, create);
    if (!sandbox.ok()) {
        // A template that is not there is the pipeline's mistake, unless it was a bake found a
        // moment ago: then it was evicted in between, and the retry bakes it again.
        bool user = sandbox.error().code == ErrorCode::TemplateNotFound && !m_outcome.bake_hit;
        return fail(JobState::Error, "creating the job's VM from " + m_template_shown + ": " + sandbox.error().message, !user);
    }
    // From here tear_down removes the VM, and the watchdog can stop the job by removing it too.
    m_sandbox_id = sandbox->id;
    m_control.set_sandbox(m_sandbox_id);
    m_log.event({{"type", "vm"}, {"sandbox", m_sandbox_id}, {"from", m_template_shown}, {"create_ms", sandbox->create_ms}});
    if (m_control.stopped()) return stopped_by_watchdog();
    auto lease = service.lease(m_runner.m_config.caller, m_sandbox_id);
    if (!lease.ok()) return vm_failure("the job's VM", lease.error());
    m_lease = std::move(*lease);
    m_agent = &m_lease->agent();
    return true;
}

bool JobAttempt::check_out() {
    // The host made the checkout (GitCache::checkout_tar, still under way perhaps); one guest
    // command extracts it from stdin and has git confirm HEAD.
    const int64_t checkout_start = now_mono();
    proto::ExecRequest checkout;
    checkout.argv = {"sh", "-e", "-c", checkout_script(), "sh", m_job.sha};
    checkout.cwd = "/";
    checkout.timeout_ms = static_cast<uint64_t>(std::min<int64_t>(left_ms(), 600000));
    vm::ExecIo io;
    io.stdin_source = m_checkout_tar->source();
    auto co = m_agent->exec_collect(checkout, std::move(io), 1 << 20);
    if (!co.ok()) return vm_failure("checking out in the VM", co.error());
    if (const auto& made = m_checkout_tar->wait(); !made.ok())  // a commit over 4 GiB is the job's
        return fail(JobState::Error, "preparing the checkout: " + made.error().message, made.error().code != ErrorCode::TooLarge);
    m_checkout_tar->remove();
    std::string head = co->stdout_data;
    while (!head.empty() && (head.back() == '\n' || head.back() == '\r')) head.pop_back();
    if (head.size() > 40) head = head.substr(head.size() - 40);
    if (co->result.shell_status() != 0 || head != m_job.sha) {
        if (m_control.stopped()) return stopped_by_watchdog();
        return fail(JobState::Error,
                    "the checkout in the VM is not " + m_job.sha + " (HEAD " + head + ", status " +
                        std::to_string(co->result.shell_status()) + "): " + last_lines(co->stderr_data, 5),
                    true);
    }
    m_log.event({{"type", "checkout"}, {"sha", head}, {"checkout_ms", now_mono() - checkout_start},
                 {"tar_ms", m_checkout_tar->made_ms()}, {"tar_wait_ms", m_checkout_tar->waited_ms()}});
    return true;
}

bool JobAttempt::bake_on_miss() {
    const JobDefinition& p = m_def;
    if (!p.bake || m_outcome.bake_hit) return true;
    // No secrets: the snapshot keeps whatever the bake leaves. This VM then goes on as the job's,
    // which is what a restore of the new snapshot would give.
    StepRecord bake{"bake", "pending", -1, 0};
    if (auto ran = run_script("bake", p.bake->run, job_env(), std::nullopt, bake); !ran.ok())
        return vm_failure("the bake", ran.error());
    if (bake.state != "passed") {
        if (m_control.timed_out) return stopped_by_watchdog();
        return fail(JobState::Failed, "the bake (bake.run) " + (bake.state == "timed_out" ? std::string("timed out") :
                                          "exited with status " + std::to_string(bake.exit_code)));
    }
    const daemon::Caller& caller = m_runner.m_config.caller;
    auto snap = m_runner.m_service.snapshot(caller, m_sandbox_id,
                                            bake_snapshot_prefix(canonical_repository(m_job.spec)) + m_outcome.template_key);
    if (snap.ok()) {
        (void)m_runner.m_store.put_bake(BakeEntry{m_outcome.template_key, p.template_name, snap->id}, now_unix_ms());
        m_log.event({{"type", "baked"}, {"key", m_outcome.template_key}});  // not the snapshot's id: others' jobs read logs
        m_runner.collect_bakes();  // a new bake may push the least recently used beyond the limit
    } else if (m_control.stopped()) {
        return stopped_by_watchdog();
    } else {
        // Not the job's fault, and the job can still run in this VM.
        m_log.event({{"type", "warning"}, {"message", "the bake's snapshot failed (next job bakes again): " +
                                                          snap.error().message}});
    }
    return true;
}

bool JobAttempt::run_steps() {
    const JobDefinition& p = m_def;
    const Env base_env = job_env();
    for (size_t i = 0; i < p.steps.size(); ++i) {
        const auto& step = p.steps[i];
        if (!m_all_passed || m_control.stopped()) {
            m_outcome.steps[i].state = "skipped";
            continue;
        }
        // The pipeline's environment, then the step's, then the secrets.
        Env env = base_env;
        for (const auto& [k, v] : step.env) env[k] = v;
        for (const auto& [k, v] : m_secret_env) env[k] = v;
        auto ran = run_script(step.name, step.run, env, step.timeout_seconds, m_outcome.steps[i]);
        m_outcome.steps_ms += m_outcome.steps[i].duration_ms;
        if (!ran.ok()) {
            for (size_t j = i + 1; j < p.steps.size(); ++j) m_outcome.steps[j].state = "skipped";
            return vm_failure("step " + step.name, ran.error());
        }
        if (m_outcome.steps[i].state != "passed") m_all_passed = false;
        m_progress(m_outcome);
    }
    if (m_control.cancel) return fail(JobState::Cancelled, "cancelled");
    return true;
}

bool JobAttempt::collect_results() {
    const JobDefinition& p = m_def;
    if (m_vm_stuck) {
        m_log.event({{"type", "warning"}, {"message", "the VM stopped answering: no reports or artifacts"}});
        return true;
    }
    if (p.junit.empty() && p.artifacts.empty()) return true;
    // The globs are matched here, on the host, against a listing: never by a guest shell.
    std::vector<std::string> files;
    if (!list_checkout(files)) return false;
    if (!p.junit.empty() && !read_junit_reports(files)) return false;
    if (!p.artifacts.empty() && !copy_artifacts(files)) return false;
    return true;
}

void JobAttempt::conclude() {
    if (m_control.timed_out) {
        fail(JobState::Failed, "the job ran past its timeout_seconds (" + std::to_string(m_def.timeout_seconds) + " s)");
        return;
    }
    m_outcome.state = m_all_passed ? JobState::Passed : JobState::Failed;
    if (m_all_passed) return;
    for (const auto& s : m_outcome.steps)
        if (s.state == "failed" || s.state == "timed_out") {
            m_outcome.error = "step " + s.name + (s.state == "timed_out" ? " timed out" : " exited with status " +
                                                                                std::to_string(s.exit_code));
            break;
        }
}

void JobAttempt::tear_down() {
    // The lease goes first: the VM object it holds is released before the sandbox is removed.
    m_agent = nullptr;
    m_lease.reset();
    if (!m_sandbox_id.empty()) {
        const std::string id = std::exchange(m_sandbox_id, std::string());
        int64_t start = now_mono();
        auto st = m_runner.m_service.remove(m_runner.m_config.caller, id);
        if (!st.ok()) log::warn("ci: removing a job's VM failed", {{"sandbox", id}, {"error", st.error().to_string()}});
        m_log.event({{"type", "vm_removed"}, {"sandbox", id}, {"remove_ms", now_mono() - start}});
    }
    m_checkout_tar.reset();  // waits for the tar's thread if the VM never read it, and removes the tar
}

// ---- how an attempt ends ------------------------------------------------------------------------

bool JobAttempt::fail(JobState state, std::string error, bool retryable) {
    m_outcome.state = state;
    m_outcome.error = std::move(error);
    m_outcome.retryable = retryable;
    return false;
}

bool JobAttempt::vm_failure(const std::string& what, const Error& error) {
    if (m_control.cancel) return fail(JobState::Cancelled, "cancelled");
    if (m_control.timed_out)
        return fail(JobState::Failed, "the job ran past its timeout_seconds (" + std::to_string(m_def.timeout_seconds) +
                                          " s); its VM was destroyed");
    return fail(JobState::Error, what + ": " + error.to_string(), true);
}

int64_t JobAttempt::left_ms() const {
    int64_t deadline = m_control.deadline_ms.load();
    if (deadline == 0) return INT32_MAX;
    return std::max<int64_t>(1, deadline - now_mono());
}

const daemon::net::NetworkPolicy& JobAttempt::network() const {
    return m_job.spec.trusted ? m_runner.m_config.trusted_network : m_runner.m_config.untrusted_network;
}

// ---- steps --------------------------------------------------------------------------------------

JobAttempt::Env JobAttempt::job_env() const {
    Env env = m_def.env;
    env["CI"] = "true";
    env["KILN_JOB_ID"] = m_job.id;
    env["KILN_COMMIT_SHA"] = m_job.sha;
    return env;
}

Status JobAttempt::run_script(const std::string& name, const std::string& script, const Env& env,
                              std::optional<uint32_t> timeout_seconds, StepRecord& record) {
    vm::AgentClient& agent = *m_agent;
    proto::ExecRequest req;
    req.argv = {"sh", "-e", "-c", script};
    req.cwd = kCheckout;
    req.env = env;
    // The step's own timeout, unless the job's cap comes first: a step ended by the cap is the
    // job's timeout.
    int64_t limit = left_ms();
    bool capped = true;
    if (timeout_seconds && int64_t(*timeout_seconds) * 1000 <= limit) {
        limit = int64_t(*timeout_seconds) * 1000;
        capped = false;
    }
    req.timeout_ms = static_cast<uint64_t>(limit);
    req.output_limit = kStepOutputLimit;
    vm::ExecIo io;
    io.on_stdout = [&](std::string_view d) { m_log.output(name, "stdout", d); };
    io.on_stderr = [&](std::string_view d) { m_log.output(name, "stderr", d); };
    io.host_timeout = Millis(limit + kHostGraceMs);
    record.state = "running";
    m_progress(m_outcome);
    m_log.event({{"type", "step_started"}, {"step", name}});
    int64_t start = now_mono();
    auto r = agent.exec(req, io);
    record.duration_ms = now_mono() - start;
    if (!r.ok() && r.error().code == ErrorCode::Timeout && agent.alive()) {
        // The agent did not end the command in time (a fork bomb can starve it): the step
        // timed out, and this VM is not trusted with anything more.
        record.state = "timed_out";
        m_vm_stuck = true;
        if (capped) m_control.timed_out = true;
        m_log.event({{"type", "step_finished"}, {"step", name}, {"state", record.state}, {"duration_ms", record.duration_ms},
                     {"message", "the VM did not answer in time"}});
        return ok_status();
    }
    if (!r.ok() && agent.alive() && !m_control.stopped() && r.error().code != ErrorCode::VmGone) {
        // The agent refused the command (the job deleted /bin/sh, say): the step failed.
        record.state = "failed";
        record.exit_code = 127;
        m_log.event({{"type", "step_finished"}, {"step", name}, {"state", record.state}, {"exit_code", record.exit_code},
                     {"message", r.error().message}});
        return ok_status();
    }
    if (!r.ok()) {
        record.state = m_control.timed_out ? "timed_out" : "failed";  // the watchdog ended the job at its cap
        m_log.event({{"type", "step_finished"}, {"step", name}, {"state", record.state}, {"error", r.error().message}});
        return r.error();
    }
    record.exit_code = r->shell_status();
    if (r->timed_out) {
        record.state = "timed_out";
        if (capped) m_control.timed_out = true;
    } else {
        record.state = record.exit_code == 0 ? "passed" : "failed";
    }
    m_log.event({{"type", "step_finished"}, {"step", name}, {"state", record.state}, {"exit_code", record.exit_code},
                 {"duration_ms", record.duration_ms}, {"output_truncated", r->output_truncated}});
    return ok_status();
}

// ---- results ------------------------------------------------------------------------------------

bool JobAttempt::list_checkout(std::vector<std::string>& files) {
    vm::AgentClient& agent = *m_agent;
    proto::ExecRequest find;
    find.argv = {"find", ".", "-path", "./.git", "-prune", "-o", "-type", "f", "-print0"};
    find.cwd = kCheckout;
    find.timeout_ms = static_cast<uint64_t>(std::min<int64_t>(left_ms(), 120000));
    auto listed = agent.exec_collect(find, std::nullopt, kMaxListingBytes);
    if (!listed.ok() && (!agent.alive() || m_control.stopped()))
        return vm_failure("listing the checkout", listed.error());
    if (!listed.ok()) {  // the job broke its own VM (no find, say): its reports are simply missing
        m_log.event({{"type", "warning"}, {"message", "listing the checkout failed: " + listed.error().message}});
        return true;
    }
    // Capped in files and depth, so matching the globs stays cheap whatever tree the job made.
    const ListingLimits limits;
    CheckoutListing listing = parse_checkout_listing(listed->stdout_data, limits);
    if (listed->stdout_data.size() >= kMaxListingBytes) listing.cut_short = true;
    if (std::string warning = listing.warning(limits); !warning.empty())
        m_log.event({{"type", "warning"}, {"message", warning}});
    files = std::move(listing.files);
    return true;
}

std::vector<std::string> JobAttempt::matching_files(const std::vector<std::string>& globs,
                                                   const std::vector<std::string>& files, const char* key) {
    GlobFiltered matched = glob_filter(globs, files);
    if (!matched.complete)
        m_log.event({{"type", "warning"}, {"message", std::string("matching the ") + key +
                                                           " globs took too long; files after " +
                                                           std::to_string(matched.paths.size()) +
                                                           " matches were not considered"}});
    return std::move(matched.paths);
}

bool JobAttempt::read_junit_reports(const std::vector<std::string>& files) {
    vm::AgentClient& agent = *m_agent;
    JunitSummary sum;
    int reports = 0;
    for (const auto& f : matching_files(m_def.junit, files, "junit")) {
        std::string xml;
        auto read = agent.read_file(std::string(kCheckout) + "/" + f, [&](std::string_view d) -> Status {
            if (xml.size() + d.size() > kMaxJunitBytes) return make_error(ErrorCode::TooLarge, "over 64 MiB");
            xml.append(d);
            return ok_status();
        }, Millis(std::min<int64_t>(left_ms(), 120000)));
        if (!read.ok()) {
            if (!agent.alive()) return vm_failure("reading " + f, read.error());
            m_log.event({{"type", "warning"}, {"message", "JUnit report " + f + ": " + read.error().message}});
            continue;
        }
        auto s = read_junit_summary(xml);
        if (!s.ok()) {
            m_log.event({{"type", "warning"}, {"message", "JUnit report " + f + ": " + s.error().message}});
            continue;
        }
        sum += *s;
        ++reports;
    }
    m_outcome.junit = JunitTotals{int64_t(sum.tests), int64_t(sum.failures), int64_t(sum.errors), int64_t(sum.skipped)};
    m_log.event({{"type", "junit"}, {"reports", reports}, {"tests", sum.tests}, {"failures", sum.failures},
                 {"errors", sum.errors}, {"skipped", sum.skipped}});
    return true;
}

bool JobAttempt::copy_artifacts(const std::vector<std::string>& files) {
    vm::AgentClient& agent = *m_agent;
    // A retried attempt starts its artifacts afresh.
    (void)remove_tree(m_job_dir + "/artifacts");
    (void)make_dirs(m_job_dir + "/artifacts", 0700);
    uint64_t total = 0;
    for (const auto& f : matching_files(m_def.artifacts, files, "artifacts")) {
        if (m_outcome.artifacts.size() >= kMaxArtifacts) {
            m_log.event({{"type", "warning"}, {"message", "more than 1000 artifacts: the rest are dropped"}});
            break;
        }
        std::string dest = m_runner.artifact_path(m_job.id, m_outcome.artifacts.size());
        int fd = ::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) break;
        UniqueFd owned(fd);
        auto read = agent.read_file(std::string(kCheckout) + "/" + f, [&](std::string_view d) -> Status {
            if (total + d.size() > kMaxArtifactBytes) return make_error(ErrorCode::TooLarge, "the job's artifacts pass 1 GiB");
            total += d.size();
            if (::write(owned.get(), d.data(), d.size()) != static_cast<ssize_t>(d.size()))
                return make_error(ErrorCode::IoError, "writing the artifact on the host");
            return ok_status();
        }, Millis(std::min<int64_t>(left_ms(), 600000)));
        if (!read.ok()) {
            ::unlink(dest.c_str());
            if (!agent.alive()) return vm_failure("reading " + f, read.error());
            m_log.event({{"type", "warning"}, {"message", "artifact " + f + ": " + read.error().message}});
            continue;
        }
        m_outcome.artifacts.push_back(f);
    }
    m_log.event({{"type", "artifacts"}, {"count", m_outcome.artifacts.size()}, {"bytes", total}});
    return true;
}

}  // namespace kiln::ci
