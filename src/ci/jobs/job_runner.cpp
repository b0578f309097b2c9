// JobRunner: one attempt of a job in a fresh VM (see job_runner.h and docs/ci.md).
#include "ci/jobs/job_runner.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <mutex>
#include <set>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/json_log.h"
#include "base/sha256.h"
#include "base/unique_fd.h"
#include "ci/jobs/git_source.h"
#include "ci/jobs/glob_match.h"
#include "ci/jobs/job_log.h"
#include "ci/jobs/job_store.h"
#include "ci/junit/junit_summary.h"
#include "ci/pipeline/pipeline_parser.h"
#include "daemon/sandboxes/ids.h"
#include "vm/agent_client.h"

namespace kiln::ci {
namespace {

constexpr const char* kCheckout = "/work/src";
constexpr size_t kMaxPipelineBytes = 256 * 1024;
constexpr size_t kMaxJunitBytes = 64ull << 20;
constexpr size_t kMaxArtifacts = 1000;
constexpr uint64_t kMaxArtifactBytes = 1ull << 30;  // all of a job's artifacts together
constexpr uint64_t kStepOutputLimit = 4ull << 30;   // the agent's cap; our log has its own, lower
constexpr int64_t kHostGraceMs = 30000;             // past a step's timeout, the host stops waiting

int64_t now_mono() { return monotonic_ms(); }

// Milliseconds left before the job's hard cap (at least 1 so a request carries a timeout).
int64_t left_ms(const JobControl& c) {
    int64_t d = c.deadline_ms.load();
    if (d == 0) return INT32_MAX;
    return std::max<int64_t>(1, d - now_mono());
}

// A job failure worded for the record (the code is for logs only).
RunOutcome fail(RunOutcome o, JobState state, std::string error, bool retryable = false) {
    o.state = state;
    o.error = std::move(error);
    o.retryable = retryable;
    return o;
}

// An error from the VM side: if the watchdog stopped the job, it is a cancel or the cap; else
// the infrastructure failed and the attempt may be retried.
RunOutcome vm_failure(RunOutcome o, const JobControl& c, const std::string& what, const Error& e,
                      uint32_t cap_seconds) {
    if (c.cancel) return fail(std::move(o), JobState::Cancelled, "cancelled");
    if (c.timed_out)
        return fail(std::move(o), JobState::Failed,
                    "the job ran past its timeout_seconds (" + std::to_string(cap_seconds) + " s); its VM was destroyed");
    return fail(std::move(o), JobState::Error, what + ": " + e.to_string(), true);
}

// The checkout's tar of a job (GitCache::checkout_tar), made on its own thread; source() streams
// it once it is there. Destroying it waits for that thread and removes the tar.
class CodeTar {
public:
    CodeTar(GitCache& git, std::string cache_repo, std::string sha, std::string dir)
        : m_future(std::async(std::launch::async, [&git, repo = std::move(cache_repo), sha = std::move(sha),
                                                   dir = std::move(dir), this] {
              int64_t start = now_mono();
              auto r = git.checkout_tar(repo, sha, dir);
              m_made_ms = now_mono() - start;
              return r;
          })) {}
    ~CodeTar() { remove(); }

    // Once the VM has it, the tar goes (an open fd still reads it); waits for it to be made.
    void remove() {
        if (const auto& made = wait(); made.ok()) ::unlink(made->c_str());
    }

    const Result<std::string>& wait() {
        std::call_once(m_once, [this] { m_result.emplace(m_future.get()); });
        return *m_result;
    }
    int64_t made_ms() const { return m_made_ms; }
    int64_t waited_ms() const { return m_waited_ms; }

    // The tar's bytes; an error if it could not be made (the command then sees a cut-off stream).
    vm::ByteSource source() {
        return [this](char* buf, size_t cap) -> Result<size_t> {
            if (!m_fd) {
                int64_t start = now_mono();
                const auto& path = wait();
                m_waited_ms = now_mono() - start;
                if (!path.ok()) return path.error();
                m_fd = UniqueFd(::open(path->c_str(), O_RDONLY | O_CLOEXEC));
                if (!m_fd) return make_error(ErrorCode::IoError, "opening the checkout's tar: " + std::string(std::strerror(errno)));
            }
            ssize_t n = ::read(m_fd.get(), buf, cap);
            if (n < 0) return make_error(ErrorCode::IoError, "reading the checkout's tar: " + std::string(std::strerror(errno)));
            return static_cast<size_t>(n);
        };
    }

private:
    std::atomic<int64_t> m_made_ms{0};
    std::atomic<int64_t> m_waited_ms{0};
    std::future<Result<std::string>> m_future;
    std::once_flag m_once;
    std::optional<Result<std::string>> m_result;
    UniqueFd m_fd;
};

}  // namespace

JobRunner::JobRunner(RunnerConfig config, daemon::SandboxService& service, JobStore& store, GitCache& git)
    : m_config(std::move(config)), m_service(service), m_store(store), m_git(git) {}

void JobRunner::collect_bakes() {
    std::lock_guard lock(m_eviction);
    const int64_t now = now_unix_ms();
    const int64_t cutoff = now - m_config.bake_min_idle_ms;
    auto doomed = m_store.bakes_to_evict(m_config.bakes_kept, cutoff);
    if (!doomed.ok()) {
        log::warn("ci: listing bakes to evict failed", {{"error", doomed.error().to_string()}});
        return;
    }
    auto remove = [&](const std::string& snapshot_id, const char* why) {
        auto removed = m_service.remove_snapshot(m_config.caller, snapshot_id);
        if (!removed.ok() && removed.error().code != ErrorCode::NotFound)
            log::warn("ci: deleting a bake's snapshot failed", {{"snapshot", snapshot_id}, {"error", removed.error().to_string()}});
        else
            log::info(why, {{"snapshot", snapshot_id}});
    };
    for (const BakeEntry& bake : *doomed) {
        // The row goes only if no job found it since it was chosen: a job that did is on its way
        // to a create from this snapshot.
        auto evicted = m_store.evict_bake(bake, cutoff);
        if (!evicted.ok()) log::warn("ci: evicting a bake failed", {{"key", bake.key}, {"error", evicted.error().to_string()}});
        if (evicted.ok() && *evicted) remove(bake.snapshot_id, "ci: bake evicted (least recently used)");
    }
    // Bake snapshots no row names: kilnd stopped between a row's deletion and its snapshot's, or
    // two jobs baked one key at once (the second row replaced the first). Only old ones: a bake
    // just snapshotted gets its row a moment later.
    auto named = m_store.baked_snapshot_ids();
    auto owned = m_service.list_snapshots(m_config.caller);
    if (!named.ok() || !owned.ok()) return;
    std::set<std::string> live(named->begin(), named->end());
    for (const auto& snap : *owned)
        if (snap.name.rfind(kBakeSnapshotPrefix, 0) == 0 && !live.count(snap.id) && snap.created_at_ms < now - kUnnamedBakeGraceMs)
            remove(snap.id, "ci: bake snapshot no bake names, deleted");
}

std::string JobRunner::artifact_path(const std::string& job_id, size_t index) const {
    return m_config.jobs_dir + "/" + job_id + "/artifacts/" + std::to_string(index);
}

std::string JobRunner::log_path(const std::string& job_id) const {
    return m_config.jobs_dir + "/" + job_id + "/log.ndjson";
}

RunOutcome JobRunner::run(const JobInfo& job, const std::map<std::string, std::string>& spec_secrets, JobLog& log,
                          JobControl& control, const std::function<void(const RunOutcome&)>& progress) {
    RunOutcome out;
    const std::string job_dir = m_config.jobs_dir + "/" + job.id;
    log.event({{"type", "attempt"}, {"attempt", job.attempts}, {"sha", job.sha}, {"repo", job.spec.repo}});
    const int64_t host_start = now_mono();  // phase timings go into the log (docs/ci.md's breakdown)

    // 1a. The code, on the host: the commit in the cache repository, its .kiln.yml; its checkout's
    // tar is made below, beside the VM's creation.
    auto cache_repo = m_git.fetch(job.spec.repo, job.sha);
    if (!cache_repo.ok()) {
        bool user_error = cache_repo.error().code == ErrorCode::InvalidArgument || cache_repo.error().code == ErrorCode::NotFound;
        return fail(out, JobState::Error, "getting the code: " + cache_repo.error().message, !user_error);
    }
    auto yml = m_git.read_file(*cache_repo, job.sha, ".kiln.yml", kMaxPipelineBytes);
    if (!yml.ok()) return fail(out, JobState::Error, "reading .kiln.yml: " + yml.error().message);
    if (!*yml) return fail(out, JobState::Error, "the commit " + job.sha + " has no .kiln.yml at its top level");
    auto pipeline = parse_pipeline(**yml);
    if (!pipeline.ok()) return fail(out, JobState::Error, ".kiln.yml is invalid:\n" + pipeline.error().message);
    const Pipeline& p = *pipeline;
    // The hard cap covers everything from here: bake, clone, steps, reports.
    control.deadline_ms = now_mono() + int64_t(p.timeout_seconds) * 1000;
    for (const auto& s : p.steps) out.steps.push_back(StepRecord{s.name, "pending", -1, 0});
    progress(out);

    if (auto st = make_dirs(job_dir, 0700); !st.ok()) return fail(out, JobState::Error, st.error().to_string(), true);
    log.event({{"type", "code"}, {"host_ms", now_mono() - host_start}});
    // The checkout's tar is made on another thread while the VM is created and the command that
    // extracts it starts: that command waits on its stdin for the tar.
    CodeTar code_tar(m_git, *cache_repo, job.sha, job_dir);

    // Secrets: only for trusted jobs, only the names the pipeline asks for; masked in the log.
    std::map<std::string, std::string> secret_env;
    if (job.spec.trusted) {
        for (const auto& name : p.secrets) {
            if (auto it = spec_secrets.find(name); it != spec_secrets.end()) secret_env[name] = it->second;
            else if (auto c = m_config.secrets.find(name); c != m_config.secrets.end()) secret_env[name] = c->second;
            else log.event({{"type", "warning"}, {"message", "secret " + name + " is not configured on this kilnd"}});
        }
    } else if (!p.secrets.empty()) {
        log.event({{"type", "warning"}, {"message", "untrusted job (e.g. a fork's pull request): no secrets"}});
    }
    {
        std::vector<std::string> masked;
        for (const auto& [k, v] : secret_env) masked.push_back(v);
        log.set_masked(std::move(masked));
    }

    // 1b. The template: the bake's snapshot for this key, or the template itself.
    std::string template_id = p.template_name;
    const daemon::net::NetworkPolicy& network = job.spec.trusted ? m_config.trusted_network : m_config.untrusted_network;
    if (p.bake) {
        // The trust class is part of the key: a bake runs the job's own code and commands, so an
        // untrusted job's bake must never become a trusted job's VM. The policy is too: a bake
        // with a NIC and one without are different device sets (docs/network.md).
        std::string text = p.template_name + '\0' + p.bake->run + '\0' + (job.spec.trusted ? "trusted" : "untrusted") + '\0' +
                           daemon::net::to_json(network).dump() + '\0';
        for (const auto& f : p.bake->key_files) {
            auto id = m_git.blob_id(*cache_repo, job.sha, f);
            if (!id.ok()) return fail(out, JobState::Error, "hashing " + f + ": " + id.error().message, true);
            text += f + '\0' + (id->empty() ? std::string("(missing)") : *id) + '\n';
        }
        out.template_key = sha256_hex(text).substr(0, 16);
        auto entry = m_store.find_bake(out.template_key, now_unix_ms());
        if (entry.ok() && *entry && m_service.get_snapshot(m_config.caller, (*entry)->snapshot_id).ok()) {
            out.bake_hit = true;
            template_id = (*entry)->snapshot_id;
        } else if (entry.ok() && *entry) {
            (void)m_store.drop_bake(out.template_key);  // its snapshot is gone: bake again
        }
    } else {
        out.template_key = p.template_name;
    }
    log.event({{"type", "template"}, {"template", p.template_name}, {"key", out.template_key},
               {"bake", p.bake ? (out.bake_hit ? "hit" : "miss") : "none"}});

    daemon::CreateRequest create;
    create.template_id = template_id;
    create.ttl_seconds = std::min<int64_t>(m_config.max_ttl_seconds, int64_t(p.timeout_seconds) + 300);
    create.metadata = {{"ci_job", job.id}};
    create.network = network;
    if (control.stopped()) return vm_failure(out, control, "", Error{}, p.timeout_seconds);
    auto sandbox = m_service.create(m_config.caller, create);
    if (!sandbox.ok()) {
        // A template that is not there is the pipeline's mistake, unless it was a bake found a
        // moment ago: then it was evicted in between, and the retry bakes it again.
        bool user = sandbox.error().code == ErrorCode::TemplateNotFound && !out.bake_hit;
        return fail(out, JobState::Error, "creating the job's VM from " + template_id + ": " + sandbox.error().message, !user);
    }
    const std::string sb = sandbox->id;
    control.set_sandbox(sb);
    // 5. The VM goes, whatever happens below.
    struct Destroy {
        daemon::SandboxService& service;
        const daemon::Caller& caller;
        std::string id;
        JobLog& log;
        ~Destroy() {
            int64_t start = now_mono();
            auto st = service.remove(caller, id);
            if (!st.ok()) log::warn("ci: removing a job's VM failed", {{"sandbox", id}, {"error", st.error().to_string()}});
            log.event({{"type", "vm_removed"}, {"sandbox", id}, {"remove_ms", now_mono() - start}});
        }
    } destroy{m_service, m_config.caller, sb, log};
    log.event({{"type", "vm"}, {"sandbox", sb}, {"from", template_id}, {"create_ms", sandbox->create_ms}});
    if (control.stopped()) return vm_failure(out, control, "", Error{}, p.timeout_seconds);
    auto lease = m_service.lease(m_config.caller, sb);
    if (!lease.ok()) return vm_failure(out, control, "the job's VM", lease.error(), p.timeout_seconds);
    vm::AgentClient& agent = (*lease)->agent();

    // 2. The exact commit, verified. The host made the checkout (GitCache::checkout_tar); one
    // guest command extracts it from stdin and has git confirm HEAD: every new program and code
    // path costs ~50-250 ms in a freshly restored TCG guest, so git does as little as it can here.
    // A bake's snapshot already holds a checkout with what the bake left beside it: there only the
    // objects are added and git moves that checkout to the commit (deleting what the commit does
    // not have, unlike an extraction over it).
    const int64_t checkout_start = now_mono();
    proto::ExecRequest checkout;
    checkout.argv = {"sh", "-e", "-c",
                     "if [ -d " + std::string(kCheckout) + "/.git ]; then"
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
                     " git rev-parse --verify HEAD^{commit}",
                     "sh", job.sha};
    checkout.cwd = "/";
    checkout.timeout_ms = static_cast<uint64_t>(std::min<int64_t>(left_ms(control), 600000));
    vm::ExecIo co_io;
    co_io.stdin_source = code_tar.source();
    auto co = agent.exec_collect(checkout, std::move(co_io), 1 << 20);
    if (!co.ok()) return vm_failure(out, control, "checking out in the VM", co.error(), p.timeout_seconds);
    if (const auto& made = code_tar.wait(); !made.ok())
        return fail(out, JobState::Error, "preparing the checkout: " + made.error().message, made.error().code != ErrorCode::TooLarge);
    code_tar.remove();
    std::string head = co->stdout_data;
    while (!head.empty() && (head.back() == '\n' || head.back() == '\r')) head.pop_back();
    if (head.size() > 40) head = head.substr(head.size() - 40);
    if (co->result.shell_status() != 0 || head != job.sha) {
        if (control.stopped()) return vm_failure(out, control, "", Error{}, p.timeout_seconds);
        return fail(out, JobState::Error,
                    "the checkout in the VM is not " + job.sha + " (HEAD " + head + ", status " +
                        std::to_string(co->result.shell_status()) + "): " + last_lines(co->stderr_data, 5),
                    true);
    }
    log.event({{"type", "checkout"}, {"sha", head}, {"checkout_ms", now_mono() - checkout_start},
               {"tar_ms", code_tar.made_ms()}, {"tar_wait_ms", code_tar.waited_ms()}});

    // The environment of every step: the pipeline's, then the step's, then secrets.
    std::map<std::string, std::string> base_env = p.env;
    base_env["CI"] = "true";
    base_env["KILN_JOB_ID"] = job.id;
    base_env["KILN_COMMIT_SHA"] = job.sha;

    bool vm_stuck = false;  // a step's command could not be ended: read nothing more from the VM
    // Runs one script as a step; the record in `rec`. Returns false if the VM failed under us.
    auto run_script = [&](const std::string& name, const std::string& script, const std::map<std::string, std::string>& env,
                          std::optional<uint32_t> timeout_s, StepRecord& rec, Error* vm_error) -> bool {
        proto::ExecRequest req;
        req.argv = {"sh", "-e", "-c", script};
        req.cwd = kCheckout;
        req.env = env;
        int64_t limit = left_ms(control);
        bool capped = true;
        if (timeout_s && int64_t(*timeout_s) * 1000 <= limit) {
            limit = int64_t(*timeout_s) * 1000;
            capped = false;
        }
        req.timeout_ms = static_cast<uint64_t>(limit);
        req.output_limit = kStepOutputLimit;
        vm::ExecIo io;
        io.on_stdout = [&](std::string_view d) { log.output(name, "stdout", d); };
        io.on_stderr = [&](std::string_view d) { log.output(name, "stderr", d); };
        io.host_timeout = Millis(limit + kHostGraceMs);
        rec.state = "running";
        progress(out);
        log.event({{"type", "step_started"}, {"step", name}});
        int64_t start = now_mono();
        auto r = agent.exec(req, io);
        rec.duration_ms = now_mono() - start;
        if (!r.ok() && r.error().code == ErrorCode::Timeout && agent.alive()) {
            // The agent did not end the command in time (a fork bomb can starve it): the step
            // timed out, and this VM is not trusted with anything more.
            rec.state = "timed_out";
            vm_stuck = true;
            if (capped) control.timed_out = true;
            log.event({{"type", "step_finished"}, {"step", name}, {"state", rec.state}, {"duration_ms", rec.duration_ms},
                       {"message", "the VM did not answer in time"}});
            return true;
        }
        if (!r.ok() && agent.alive() && !control.stopped() && r.error().code != ErrorCode::VmGone) {
            // The agent refused the command (the job deleted /bin/sh, say): the step failed.
            rec.state = "failed";
            rec.exit_code = 127;
            log.event({{"type", "step_finished"}, {"step", name}, {"state", rec.state}, {"exit_code", rec.exit_code},
                       {"message", r.error().message}});
            return true;
        }
        if (!r.ok()) {
            rec.state = control.timed_out ? "timed_out" : "failed";  // the watchdog ended the job at its cap
            *vm_error = r.error();
            log.event({{"type", "step_finished"}, {"step", name}, {"state", rec.state}, {"error", r.error().message}});
            return false;
        }
        rec.exit_code = r->shell_status();
        if (r->timed_out) {
            rec.state = "timed_out";
            if (capped) control.timed_out = true;
        } else {
            rec.state = rec.exit_code == 0 ? "passed" : "failed";
        }
        log.event({{"type", "step_finished"}, {"step", name}, {"state", rec.state}, {"exit_code", rec.exit_code},
                   {"duration_ms", rec.duration_ms}, {"output_truncated", r->output_truncated}});
        return true;
    };

    // 1c. A key miss: bake now (no secrets: the snapshot keeps what the bake leaves), snapshot,
    // and go on in this same VM, which is what a restore of the new snapshot would give.
    if (p.bake && !out.bake_hit) {
        StepRecord bake{"bake", "pending", -1, 0};
        Error e;
        if (!run_script("bake", p.bake->run, base_env, std::nullopt, bake, &e))
            return vm_failure(out, control, "the bake", e, p.timeout_seconds);
        if (bake.state != "passed") {
            if (control.timed_out) return vm_failure(out, control, "", Error{}, p.timeout_seconds);
            return fail(out, JobState::Failed, "the bake (bake.run) " + (bake.state == "timed_out" ? std::string("timed out") :
                                                   "exited with status " + std::to_string(bake.exit_code)));
        }
        auto snap = m_service.snapshot(m_config.caller, sb, kBakeSnapshotPrefix + out.template_key);
        if (snap.ok()) {
            (void)m_store.put_bake(BakeEntry{out.template_key, p.template_name, snap->id}, now_unix_ms());
            log.event({{"type", "baked"}, {"key", out.template_key}, {"snapshot", snap->id}});
            collect_bakes();
        } else if (control.stopped()) {
            return vm_failure(out, control, "", Error{}, p.timeout_seconds);
        } else {
            log.event({{"type", "warning"}, {"message", "the bake's snapshot failed (next job bakes again): " +
                                                            snap.error().message}});
        }
    }

    // 3. The steps, in order; the first that does not pass ends them.
    bool all_passed = true;
    for (size_t i = 0; i < p.steps.size(); ++i) {
        const auto& step = p.steps[i];
        if (!all_passed || control.stopped()) {
            out.steps[i].state = "skipped";
            continue;
        }
        auto env = base_env;
        for (const auto& [k, v] : step.env) env[k] = v;
        for (const auto& [k, v] : secret_env) env[k] = v;
        Error e;
        bool alive = run_script(step.name, step.run, env, step.timeout_seconds, out.steps[i], &e);
        out.steps_ms += out.steps[i].duration_ms;
        if (!alive) {
            for (size_t j = i + 1; j < p.steps.size(); ++j) out.steps[j].state = "skipped";
            return vm_failure(out, control, "step " + step.name, e, p.timeout_seconds);
        }
        if (out.steps[i].state != "passed") all_passed = false;
        progress(out);
    }
    if (control.cancel) return fail(out, JobState::Cancelled, "cancelled");

    // 4. Reports and artifacts, read by the host (globs matched here, never by a guest shell).
    if (vm_stuck) log.event({{"type", "warning"}, {"message", "the VM stopped answering: no reports or artifacts"}});
    if (!vm_stuck && (!p.junit.empty() || !p.artifacts.empty())) {
        proto::ExecRequest find;
        find.argv = {"find", ".", "-path", "./.git", "-prune", "-o", "-type", "f", "-print0"};
        find.cwd = kCheckout;
        find.timeout_ms = static_cast<uint64_t>(std::min<int64_t>(left_ms(control), 120000));
        auto listed = agent.exec_collect(find, std::nullopt, 16 << 20);
        if (!listed.ok() && (!agent.alive() || control.stopped()))
            return vm_failure(out, control, "listing the checkout", listed.error(), p.timeout_seconds);
        if (!listed.ok())  // the job broke its own VM (no find, say): its reports are simply missing
            log.event({{"type", "warning"}, {"message", "listing the checkout failed: " + listed.error().message}});
        std::vector<std::string> files;
        const std::string text = listed.ok() ? listed->stdout_data : std::string();
        for (size_t pos = 0; pos < text.size();) {
            size_t end = text.find('\0', pos);
            if (end == std::string::npos) break;  // cut off by the cap: not a whole name
            std::string f = text.substr(pos, end - pos);
            if (f.rfind("./", 0) == 0) f = f.substr(2);
            if (!f.empty()) files.push_back(std::move(f));
            pos = end + 1;
        }
        if (!p.junit.empty()) {
            JunitSummary sum;
            int reports = 0;
            for (const auto& f : glob_filter(p.junit, files)) {
                std::string xml;
                auto read = agent.read_file(std::string(kCheckout) + "/" + f, [&](std::string_view d) -> Status {
                    if (xml.size() + d.size() > kMaxJunitBytes) return make_error(ErrorCode::TooLarge, "over 64 MiB");
                    xml.append(d);
                    return ok_status();
                }, Millis(std::min<int64_t>(left_ms(control), 120000)));
                if (!read.ok()) {
                    if (!agent.alive()) return vm_failure(out, control, "reading " + f, read.error(), p.timeout_seconds);
                    log.event({{"type", "warning"}, {"message", "JUnit report " + f + ": " + read.error().message}});
                    continue;
                }
                auto s = read_junit_summary(xml);
                if (!s.ok()) {
                    log.event({{"type", "warning"}, {"message", "JUnit report " + f + ": " + s.error().message}});
                    continue;
                }
                sum += *s;
                ++reports;
            }
            out.junit = JunitTotals{int64_t(sum.tests), int64_t(sum.failures), int64_t(sum.errors), int64_t(sum.skipped)};
            log.event({{"type", "junit"}, {"reports", reports}, {"tests", sum.tests}, {"failures", sum.failures},
                       {"errors", sum.errors}, {"skipped", sum.skipped}});
        }
        if (!p.artifacts.empty()) {
            (void)remove_tree(job_dir + "/artifacts");
            (void)make_dirs(job_dir + "/artifacts", 0700);
            uint64_t total = 0;
            for (const auto& f : glob_filter(p.artifacts, files)) {
                if (out.artifacts.size() >= kMaxArtifacts) {
                    log.event({{"type", "warning"}, {"message", "more than 1000 artifacts: the rest are dropped"}});
                    break;
                }
                std::string dest = artifact_path(job.id, out.artifacts.size());
                int fd = ::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0) break;
                UniqueFd owned(fd);
                auto read = agent.read_file(std::string(kCheckout) + "/" + f, [&](std::string_view d) -> Status {
                    if (total + d.size() > kMaxArtifactBytes) return make_error(ErrorCode::TooLarge, "the job's artifacts pass 1 GiB");
                    total += d.size();
                    if (::write(owned.get(), d.data(), d.size()) != static_cast<ssize_t>(d.size()))
                        return make_error(ErrorCode::IoError, "writing the artifact on the host");
                    return ok_status();
                }, Millis(std::min<int64_t>(left_ms(control), 600000)));
                if (!read.ok()) {
                    ::unlink(dest.c_str());
                    if (!agent.alive()) return vm_failure(out, control, "reading " + f, read.error(), p.timeout_seconds);
                    log.event({{"type", "warning"}, {"message", "artifact " + f + ": " + read.error().message}});
                    continue;
                }
                out.artifacts.push_back(f);
            }
            log.event({{"type", "artifacts"}, {"count", out.artifacts.size()}, {"bytes", total}});
        }
    }

    if (control.timed_out)
        return fail(out, JobState::Failed, "the job ran past its timeout_seconds (" + std::to_string(p.timeout_seconds) + " s)");
    out.state = all_passed ? JobState::Passed : JobState::Failed;
    if (!all_passed) {
        for (const auto& s : out.steps)
            if (s.state == "failed" || s.state == "timed_out") {
                out.error = "step " + s.name + (s.state == "timed_out" ? " timed out" : " exited with status " +
                                                                               std::to_string(s.exit_code));
                break;
            }
    }
    return out;
}

}  // namespace kiln::ci
