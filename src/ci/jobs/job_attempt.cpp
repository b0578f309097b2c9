// JobAttempt: one attempt of a job in fresh VMs, phase by phase (see job_attempt.h and docs/ci.md);
// the shards' fan-out is in job_shards.cpp, the needed jobs' artifacts in job_needs.cpp.
#include "ci/jobs/job_attempt.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
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
#include "ci/junit/junit_cases.h"
#include "ci/junit/junit_summary.h"
#include "daemon/sandboxes/ids.h"
#include "vm/agent_client.h"

namespace kiln::ci {
namespace {

constexpr const char* kCheckout = "/work/src";
constexpr const char* kNeedsDir = "/work/needs";
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
                       const Progress& progress, const LoadedPipeline* source)
    : m_runner(runner),
      m_job(job),
      m_spec_secrets(spec_secrets),
      m_log(log),
      m_control(control),
      m_progress(progress),
      m_preloaded(source),
      m_job_dir(runner.m_config.jobs_dir + "/" + job.id) {}

JobAttempt::~JobAttempt() { tear_down(); }

// ---- the phases, in the order they run ----------------------------------------------------------

bool JobAttempt::prepare_source() {
    // attempt: the claim; host: where it runs; reason: why a run after an interruption exists
    // ("attempt 2: host b lost ..."), so the log says it on whichever host runs it.
    m_log.event({{"type", "attempt"}, {"attempt", m_job.attempts}, {"sha", m_job.sha}, {"repo", m_job.spec.repo},
                 {"host", m_job.host}, {"run", m_job.attempt}, {"reason", m_job.attempt_reason}});
    const int64_t host_start = now_mono();  // phase timings go into the log (docs/ci.md's breakdown)
    GitCache& git = m_runner.m_git;
    // The pipeline's first job: its worker loaded the file a moment ago to plan the pipeline, and
    // the commit is in the cache repository; the other jobs load it here.
    auto loaded = m_preloaded ? std::variant<LoadedPipeline, PipelineLoadError>(*m_preloaded)
                              : load_pipeline(git, m_job.spec, m_job.sha);
    if (auto* problem = std::get_if<PipelineLoadError>(&loaded))
        return fail(JobState::Error, problem->message, problem->retryable);
    auto& source = std::get<LoadedPipeline>(loaded);
    m_cache_repo = std::move(source.cache_repo);
    // The plan is the one the pipeline's worker made from the same file (plan_pipeline is
    // deterministic): this job is the planned job of its name. A row from before pipelines has no
    // name and was the file's only job.
    const std::vector<PlannedJob> plan = plan_pipeline(source.pipeline);
    auto planned = std::find_if(plan.begin(), plan.end(), [&](const PlannedJob& j) { return j.name == m_job.name; });
    if (m_job.name.empty()) planned = plan.begin();
    if (planned == plan.end() || planned->definition >= source.pipeline.jobs.size())
        return fail(JobState::Error, ".kiln.yml at " + m_job.sha + " has no job named '" + m_job.name + "'");
    m_def = std::move(source.pipeline.jobs[planned->definition]);
    m_planned_name = planned->name;
    m_matrix = planned->matrix;
    m_shards = static_cast<int>(std::clamp<uint32_t>(m_def.parallel, 1, PipelineLimits::kMaxParallel));
    if (m_shards > 1 && m_def.fork_after) {
        auto step = std::find_if(m_def.steps.begin(), m_def.steps.end(),
                                 [&](const PipelineStep& s) { return s.name == *m_def.fork_after; });
        if (step == m_def.steps.end())  // parse_pipeline refuses it; a plan from elsewhere is not trusted
            return fail(JobState::Error, ".kiln.yml: job " + m_def.name + ": fork_after names no step ('" +
                                             *m_def.fork_after + "')");
        m_fork_index = static_cast<size_t>(step - m_def.steps.begin());
    }
    // The hard cap covers everything from here: bake, clone, steps, reports; and every shard.
    m_control.deadline_ms = now_mono() + int64_t(m_def.timeout_seconds) * 1000;
    {
        std::lock_guard lock(m_mutex);
        m_outcome.steps = planned_step_records();
        m_progress(m_outcome);
    }

    if (auto st = make_dirs(m_job_dir, 0700); !st.ok()) return fail(JobState::Error, st.error().to_string(), true);
    if (!m_def.artifacts.empty()) {  // a retried attempt starts its artifacts afresh
        (void)remove_tree(m_job_dir + "/artifacts");
        if (auto st = make_dirs(m_job_dir + "/artifacts", 0700); !st.ok())
            return fail(JobState::Error, st.error().to_string(), true);
    }
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
        auto entry = m_runner.m_store.find_bake(m_runner.m_config.host, m_outcome.template_key, now_unix_ms());
        if (entry.ok() && *entry && m_runner.m_service.get_snapshot(m_runner.m_config.caller, (*entry)->snapshot_id).ok()) {
            m_outcome.bake_hit = true;
            m_template_id = (*entry)->snapshot_id;
            m_template_shown = "the bake " + m_outcome.template_key;  // never the snapshot's id (docs/tenants-ci.md)
        } else if (entry.ok() && *entry) {
            (void)m_runner.m_store.drop_bake(m_runner.m_config.host, m_outcome.template_key);  // its snapshot is gone: bake again
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

bool JobAttempt::run_vms() {
    if (m_shards > 1 && !m_fork_index) return run_fresh_shards();
    // The job's own VM: all its steps, or those up to fork_after before its shards are forked.
    m_checkouts_left = 1;
    AttemptVm& vm = add_vm(-1);
    if (!start_vm(vm) || !check_out(vm) || !bake_on_miss(vm) || !copy_needs(vm)) return false;
    if (!m_fork_index) return run_steps(vm, 0, m_def.steps.size()) && collect_results(vm);
    return run_steps(vm, 0, *m_fork_index + 1) && run_forked_shards(vm);
}

bool JobAttempt::start_vm(AttemptVm& vm) {
    daemon::SandboxService& service = m_runner.m_service;
    daemon::CreateRequest create;
    create.template_id = m_template_id;
    create.ttl_seconds = vm_ttl_seconds();
    create.metadata = vm_metadata(vm.shard);
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
    vm.sandbox_id = sandbox->id;
    m_control.add_sandbox(vm.sandbox_id);
    event(vm, {{"type", "vm"}, {"sandbox", vm.sandbox_id}, {"from", m_template_shown}, {"create_ms", sandbox->create_ms}});
    return lease_vm(vm);
}

bool JobAttempt::lease_vm(AttemptVm& vm) {
    if (m_control.stopped()) return stopped_by_watchdog();
    auto lease = m_runner.m_service.lease(m_runner.m_config.caller, vm.sandbox_id);
    if (!lease.ok()) return vm_failure("the job's VM", lease.error());
    vm.lease = std::move(*lease);
    vm.agent = &vm.lease->agent();
    return true;
}

bool JobAttempt::check_out(AttemptVm& vm) {
    // The host made the checkout (GitCache::checkout_tar, still under way perhaps); one guest
    // command extracts it from stdin and has git confirm HEAD.
    const int64_t checkout_start = now_mono();
    proto::ExecRequest checkout;
    checkout.argv = {"sh", "-e", "-c", checkout_script(), "sh", m_job.sha};
    checkout.cwd = "/";
    checkout.timeout_ms = static_cast<uint64_t>(std::min<int64_t>(left_ms(), 600000));
    vm::ExecIo io;
    io.stdin_source = m_checkout_tar->source();
    auto co = vm.agent->exec_collect(checkout, std::move(io), 1 << 20);
    // The tar goes once the last VM that reads it has (a fresh shard's may still be starting).
    const bool last_reader = --m_checkouts_left == 0;
    if (!co.ok()) return vm_failure("checking out in the VM", co.error());
    if (const auto& made = m_checkout_tar->wait(); !made.ok())  // a commit over 4 GiB is the job's
        return fail(JobState::Error, "preparing the checkout: " + made.error().message, made.error().code != ErrorCode::TooLarge);
    if (last_reader) m_checkout_tar->remove();
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
    event(vm, {{"type", "checkout"}, {"sha", head}, {"checkout_ms", now_mono() - checkout_start},
               {"tar_ms", m_checkout_tar->made_ms()}, {"tar_wait_ms", m_checkout_tar->waited_ms()}});
    return true;
}

bool JobAttempt::bake_on_miss(AttemptVm& vm) {
    const JobDefinition& p = m_def;
    if (!p.bake || m_outcome.bake_hit) return true;
    // No secrets, and no shard's variables: the snapshot keeps whatever the bake leaves. This VM
    // then goes on as the job's, which is what a restore of the new snapshot would give.
    StepRecord bake{"bake", "pending", -1, 0};
    bake.shard = vm.shard;
    if (auto ran = run_script(vm, "bake", p.bake->run, job_env(-1), std::nullopt, bake, std::nullopt); !ran.ok())
        return vm_failure("the bake", ran.error());
    if (bake.state != "passed") {
        if (m_control.timed_out) return stopped_by_watchdog();
        return fail(JobState::Failed, "the bake (bake.run) " + (bake.state == "timed_out" ? std::string("timed out") :
                                          "exited with status " + std::to_string(bake.exit_code)));
    }
    // Fresh shards each ran the same bake: one snapshot of it (shard 0's) is enough.
    if (vm.shard > 0) return true;
    const daemon::Caller& caller = m_runner.m_config.caller;
    auto snap = m_runner.m_service.snapshot(caller, vm.sandbox_id,
                                            bake_snapshot_prefix(canonical_repository(m_job.spec)) + m_outcome.template_key);
    if (snap.ok()) {
        (void)m_runner.m_store.put_bake(BakeEntry{m_outcome.template_key, p.template_name, snap->id, m_runner.m_config.host},
                                        now_unix_ms());
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

bool JobAttempt::run_steps(AttemptVm& vm, size_t first, size_t end) {
    const JobDefinition& p = m_def;
    const Env base_env = job_env(vm.shard);
    for (size_t i = first; i < end; ++i) {
        const auto& step = p.steps[i];
        const size_t index = record_index(vm.shard, i);
        StepRecord record{step.name, "pending", -1, 0};
        record.shard = vm.shard;
        if (!vm.passed || m_control.stopped() || m_abandoned) {
            record.state = "skipped";
            publish_step(index, record);
            continue;
        }
        // The pipeline's environment, then the step's, then the secrets.
        Env env = base_env;
        for (const auto& [k, v] : step.env) env[k] = v;
        for (const auto& [k, v] : m_secret_env) env[k] = v;
        auto ran = run_script(vm, step.name, step.run, env, step.timeout_seconds, record, index);
        publish_step(index, record);
        if (!ran.ok()) {
            for (size_t j = i + 1; j < end; ++j) {
                StepRecord skipped{p.steps[j].name, "skipped", -1, 0};
                skipped.shard = vm.shard;
                publish_step(record_index(vm.shard, j), skipped);
            }
            return vm_failure("step " + step.name + (vm.shard >= 0 ? " of shard " + std::to_string(vm.shard) : ""),
                              ran.error());
        }
        if (record.state != "passed") vm.passed = false;
    }
    if (m_control.cancel) return fail(JobState::Cancelled, "cancelled");
    return !ended();  // another shard's VM may have ended the attempt meanwhile
}

bool JobAttempt::collect_results(AttemptVm& vm) {
    const JobDefinition& p = m_def;
    if (vm.stuck) {
        event(vm, {{"type", "warning"}, {"message", "the VM stopped answering: no reports or artifacts"}});
        return true;
    }
    if (p.junit.empty() && p.artifacts.empty()) return true;
    // The globs are matched here, on the host, against a listing: never by a guest shell.
    std::vector<std::string> files;
    if (!list_checkout(vm, files)) return false;
    if (!p.junit.empty() && !read_junit_reports(vm, files)) return false;
    if (!p.artifacts.empty() && !copy_artifacts(vm, files)) return false;
    return true;
}

void JobAttempt::conclude() {
    if (m_control.timed_out) {
        fail(JobState::Failed, "the job ran past its timeout_seconds (" + std::to_string(m_def.timeout_seconds) + " s)");
        return;
    }
    std::lock_guard lock(m_mutex);
    // Passed only if every step of every VM passed: one failing shard fails the job.
    const StepRecord* failed = nullptr;
    for (const auto& s : m_outcome.steps)
        if (s.state != "passed") {
            failed = &s;
            break;
        }
    m_outcome.state = failed ? JobState::Failed : JobState::Passed;
    m_ended = true;
    if (!failed) return;
    for (const auto& s : m_outcome.steps)
        if (s.state == "failed" || s.state == "timed_out") {
            failed = &s;
            break;
        }
    m_outcome.error = "step " + failed->name + (failed->shard >= 0 ? " of shard " + std::to_string(failed->shard) : "") +
                      (failed->state == "timed_out" ? " timed out"
                       : failed->state == "failed"  ? " exited with status " + std::to_string(failed->exit_code)
                                                    : " did not run");
}

void JobAttempt::remove_vm(AttemptVm& vm) {
    // The lease goes first: the VM object it holds is released before the sandbox is removed.
    vm.agent = nullptr;
    vm.lease.reset();
    if (vm.sandbox_id.empty()) return;
    const std::string id = std::exchange(vm.sandbox_id, std::string());
    int64_t start = now_mono();
    auto st = m_runner.m_service.remove(m_runner.m_config.caller, id);
    if (!st.ok()) log::warn("ci: removing a job's VM failed", {{"sandbox", id}, {"error", st.error().to_string()}});
    m_control.remove_sandbox(id);
    event(vm, {{"type", "vm_removed"}, {"sandbox", id}, {"remove_ms", now_mono() - start}});
}

void JobAttempt::tear_down() {
    for (auto& vm : m_vms) remove_vm(*vm);
    m_checkout_tar.reset();  // waits for the tar's thread if no VM read it, and removes the tar
    if (!m_needs_tar.empty()) ::unlink(std::exchange(m_needs_tar, std::string()).c_str());
}

// ---- how an attempt ends ------------------------------------------------------------------------

bool JobAttempt::fail(JobState state, std::string error, bool retryable) {
    std::lock_guard lock(m_mutex);
    if (m_ended) return false;
    m_ended = true;
    m_outcome.state = state;
    m_outcome.error = std::move(error);
    m_outcome.retryable = retryable;
    return false;
}

bool JobAttempt::ended() {
    std::lock_guard lock(m_mutex);
    return m_ended;
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

int64_t JobAttempt::vm_ttl_seconds() const {
    return std::min<int64_t>(m_runner.m_config.max_ttl_seconds, int64_t(m_def.timeout_seconds) + 300);
}

daemon::Labels JobAttempt::vm_metadata(int shard) const {
    daemon::Labels labels{{"ci_job", m_job.id}};
    if (shard >= 0) labels["ci_shard"] = std::to_string(shard);
    return labels;
}

// ---- steps --------------------------------------------------------------------------------------

JobAttempt::Env JobAttempt::job_env(int shard) const {
    Env env = m_def.env;
    env["CI"] = "true";
    env["KILN_JOB_ID"] = m_job.id;
    env["KILN_COMMIT_SHA"] = m_job.sha;
    for (const auto& [axis, value] : m_matrix) env[matrix_env_name(axis)] = value;
    env["KILN_JOB_NAME"] = m_planned_name;
    if (!m_job.pipeline_id.empty()) env["KILN_PIPELINE_ID"] = m_job.pipeline_id;
    env["KILN_NEEDS_DIR"] = kNeedsDir;
    if (shard >= 0) {
        env["KILN_SHARD_INDEX"] = std::to_string(shard);
        env["KILN_SHARD_COUNT"] = std::to_string(m_shards);
    }
    return env;
}

void JobAttempt::publish_step(size_t index, const StepRecord& record) {
    std::lock_guard lock(m_mutex);
    if (index >= m_outcome.steps.size()) return;
    m_outcome.steps[index] = record;
    // The steps' own run time, for the overhead figure: shards run at once, so the steps before
    // the fork and then the slowest shard's.
    int64_t own = 0;
    std::map<int, int64_t> shards;
    for (const auto& s : m_outcome.steps) (s.shard < 0 ? own : shards[s.shard]) += s.duration_ms;
    int64_t slowest = 0;
    for (const auto& [shard, ms] : shards) slowest = std::max(slowest, ms);
    m_outcome.steps_ms = own + slowest;
    m_progress(m_outcome);
}

void JobAttempt::skip_pending_steps() {
    std::lock_guard lock(m_mutex);
    bool changed = false;
    for (auto& s : m_outcome.steps)
        if (s.state == "pending") s.state = "skipped", changed = true;
    if (changed) m_progress(m_outcome);
}

void JobAttempt::event(const AttemptVm& vm, nlohmann::json e) {
    if (vm.shard >= 0) e["shard"] = vm.shard;
    m_log.event(std::move(e));
}

Status JobAttempt::run_script(AttemptVm& vm, const std::string& name, const std::string& script, const Env& env,
                              std::optional<uint32_t> timeout_seconds, StepRecord& record, std::optional<size_t> index) {
    vm::AgentClient& agent = *vm.agent;
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
    io.on_stdout = [&](std::string_view d) { m_log.output(name, "stdout", d, vm.shard); };
    io.on_stderr = [&](std::string_view d) { m_log.output(name, "stderr", d, vm.shard); };
    io.host_timeout = Millis(limit + kHostGraceMs);
    record.state = "running";
    record.started_at_ms = now_unix_ms();
    if (index) publish_step(*index, record);
    event(vm, {{"type", "step_started"}, {"step", name}});
    int64_t start = now_mono();
    auto r = agent.exec(req, io);
    record.duration_ms = now_mono() - start;
    if (!r.ok() && r.error().code == ErrorCode::Timeout && agent.alive()) {
        // The agent did not end the command in time (a fork bomb can starve it): the step
        // timed out, and this VM is not trusted with anything more.
        record.state = "timed_out";
        vm.stuck = true;
        if (capped) m_control.timed_out = true;
        event(vm, {{"type", "step_finished"}, {"step", name}, {"state", record.state}, {"duration_ms", record.duration_ms},
                   {"message", "the VM did not answer in time"}});
        return ok_status();
    }
    if (!r.ok() && agent.alive() && !m_control.stopped() && r.error().code != ErrorCode::VmGone) {
        // The agent refused the command (the job deleted /bin/sh, say): the step failed.
        record.state = "failed";
        record.exit_code = 127;
        event(vm, {{"type", "step_finished"}, {"step", name}, {"state", record.state}, {"exit_code", record.exit_code},
                   {"message", r.error().message}});
        return ok_status();
    }
    if (!r.ok()) {
        // The watchdog ended the job: at its cap, or on a cancel (the step did not fail by itself).
        record.state = m_control.timed_out ? "timed_out" : m_control.cancel ? "cancelled" : "failed";
        event(vm, {{"type", "step_finished"}, {"step", name}, {"state", record.state}, {"error", r.error().message}});
        return r.error();
    }
    record.exit_code = r->shell_status();
    if (r->timed_out) {
        record.state = "timed_out";
        if (capped) m_control.timed_out = true;
    } else {
        record.state = record.exit_code == 0 ? "passed" : "failed";
    }
    event(vm, {{"type", "step_finished"}, {"step", name}, {"state", record.state}, {"exit_code", record.exit_code},
               {"duration_ms", record.duration_ms}, {"output_truncated", r->output_truncated}});
    return ok_status();
}

// ---- results ------------------------------------------------------------------------------------

bool JobAttempt::list_checkout(AttemptVm& vm, std::vector<std::string>& files) {
    vm::AgentClient& agent = *vm.agent;
    proto::ExecRequest find;
    find.argv = {"find", ".", "-path", "./.git", "-prune", "-o", "-type", "f", "-print0"};
    find.cwd = kCheckout;
    find.timeout_ms = static_cast<uint64_t>(std::min<int64_t>(left_ms(), 120000));
    auto listed = agent.exec_collect(find, std::nullopt, kMaxListingBytes);
    if (!listed.ok() && (!agent.alive() || m_control.stopped()))
        return vm_failure("listing the checkout", listed.error());
    if (!listed.ok()) {  // the job broke its own VM (no find, say): its reports are simply missing
        event(vm, {{"type", "warning"}, {"message", "listing the checkout failed: " + listed.error().message}});
        return true;
    }
    // Capped in files and depth, so matching the globs stays cheap whatever tree the job made.
    const ListingLimits limits;
    CheckoutListing listing = parse_checkout_listing(listed->stdout_data, limits);
    if (listed->stdout_data.size() >= kMaxListingBytes) listing.cut_short = true;
    if (std::string warning = listing.warning(limits); !warning.empty())
        event(vm, {{"type", "warning"}, {"message", warning}});
    files = std::move(listing.files);
    return true;
}

std::vector<std::string> JobAttempt::matching_files(const AttemptVm& vm, const std::vector<std::string>& globs,
                                                   const std::vector<std::string>& files, const char* key) {
    GlobFiltered matched = glob_filter(globs, files);
    if (!matched.complete)
        event(vm, {{"type", "warning"}, {"message", std::string("matching the ") + key +
                                                         " globs took too long; files after " +
                                                         std::to_string(matched.paths.size()) +
                                                         " matches were not considered"}});
    return std::move(matched.paths);
}

bool JobAttempt::read_junit_reports(AttemptVm& vm, const std::vector<std::string>& files) {
    vm::AgentClient& agent = *vm.agent;
    JunitSummary sum;
    int reports = 0;
    for (const auto& f : matching_files(vm, m_def.junit, files, "junit")) {
        std::string xml;
        auto read = agent.read_file(std::string(kCheckout) + "/" + f, [&](std::string_view d) -> Status {
            if (xml.size() + d.size() > kMaxJunitBytes) return make_error(ErrorCode::TooLarge, "over 64 MiB");
            xml.append(d);
            return ok_status();
        }, Millis(std::min<int64_t>(left_ms(), 120000)));
        if (!read.ok()) {
            if (!agent.alive()) return vm_failure("reading " + f, read.error());
            event(vm, {{"type", "warning"}, {"message", "JUnit report " + f + ": " + read.error().message}});
            continue;
        }
        auto s = read_junit_summary(xml);
        if (!s.ok()) {
            event(vm, {{"type", "warning"}, {"message", "JUnit report " + f + ": " + s.error().message}});
            continue;
        }
        (void)keep_junit_report(m_job_dir, f, xml);  // its cases, for GET /v1/jobs/{id}/tests
        sum += *s;
        ++reports;
    }
    {
        // The job's totals are the sum over its shards.
        std::lock_guard lock(m_mutex);
        JunitTotals& totals = m_outcome.junit ? *m_outcome.junit : m_outcome.junit.emplace();
        totals.tests += int64_t(sum.tests);
        totals.failures += int64_t(sum.failures);
        totals.errors += int64_t(sum.errors);
        totals.skipped += int64_t(sum.skipped);
    }
    event(vm, {{"type", "junit"}, {"reports", reports}, {"tests", sum.tests}, {"failures", sum.failures},
               {"errors", sum.errors}, {"skipped", sum.skipped}});
    return true;
}

bool JobAttempt::copy_artifacts(AttemptVm& vm, const std::vector<std::string>& files) {
    vm::AgentClient& agent = *vm.agent;
    // A shard's artifacts are kept apart: shard-<i>/<name>.
    const std::string prefix = vm.shard >= 0 ? "shard-" + std::to_string(vm.shard) + "/" : "";
    // Each file is read into a name of this VM's own, then numbered among the job's artifacts
    // (artifact_path) under the lock: shards copy at once. A .partial left by a kilnd killed
    // meanwhile goes in the start-up sweep.
    const std::string part = m_job_dir + "/artifact-" + std::to_string(vm.shard + 1) + ".partial";
    size_t count = 0;
    uint64_t bytes = 0;
    for (const auto& f : matching_files(vm, m_def.artifacts, files, "artifacts")) {
        {
            std::lock_guard lock(m_mutex);
            if (m_outcome.artifacts.size() >= kMaxArtifacts) {
                m_log.event({{"type", "warning"}, {"message", "more than 1000 artifacts: the rest are dropped"}});
                break;
            }
        }
        int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) break;
        UniqueFd owned(fd);
        auto read = agent.read_file(std::string(kCheckout) + "/" + f, [&](std::string_view d) -> Status {
            if (m_artifact_bytes.fetch_add(d.size()) + d.size() > kMaxArtifactBytes) {
                m_artifact_bytes -= d.size();
                return make_error(ErrorCode::TooLarge, "the job's artifacts pass 1 GiB");
            }
            bytes += d.size();
            if (::write(owned.get(), d.data(), d.size()) != static_cast<ssize_t>(d.size()))
                return make_error(ErrorCode::IoError, "writing the artifact on the host");
            return ok_status();
        }, Millis(std::min<int64_t>(left_ms(), 600000)));
        owned.reset();
        if (!read.ok()) {
            ::unlink(part.c_str());
            if (!agent.alive()) return vm_failure("reading " + f, read.error());
            event(vm, {{"type", "warning"}, {"message", "artifact " + f + ": " + read.error().message}});
            continue;
        }
        std::lock_guard lock(m_mutex);
        if (m_outcome.artifacts.size() >= kMaxArtifacts ||
            ::rename(part.c_str(), m_runner.artifact_path(m_job.id, m_outcome.artifacts.size()).c_str()) != 0) {
            ::unlink(part.c_str());
            continue;
        }
        m_outcome.artifacts.push_back(prefix + f);
        ++count;
    }
    event(vm, {{"type", "artifacts"}, {"count", count}, {"bytes", bytes}});
    return true;
}

}  // namespace kiln::ci
