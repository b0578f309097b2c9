// JobAttempt's needed jobs' artifacts (docs/pipeline.md): gathered once on the host as one tar,
// extracted by one guest command in each VM of the job before its first step, at
// /work/needs/<needed job's planned name>/<artifact name as in its record>.
#include <unistd.h>

#include "base/clock.h"
#include "base/file_util.h"
#include "ci/jobs/job_attempt.h"
#include "ci/jobs/job_log.h"
#include "ci/jobs/job_store.h"
#include "ci/jobs/needs_tar.h"
#include "vm/agent_client.h"

namespace kiln::ci {
namespace {

constexpr uint64_t kMaxNeedsBytes = 1ull << 30;  // as a job's own artifacts

// Extracts the tar on stdin under /work/needs. -o: the files belong to the guest's user, not to
// the uid in the tar.
constexpr const char* kExtractNeeds = "mkdir -p /work/needs && tar -x -o -f - -C /work/needs";

}  // namespace

bool JobAttempt::gather_needs() {
    if (m_job.needs.empty()) return true;
    std::vector<std::string> folders;
    std::vector<NeededArtifact> files;
    for (const auto& id : m_job.needs) {
        auto needed = m_runner.m_store.get(id);
        if (!needed.ok()) return fail(JobState::Error, "reading the needed job " + id + ": " + needed.error().message, true);
        if (!*needed) return fail(JobState::Error, "the needed job " + id + " does not exist");
        const JobInfo& job = **needed;
        // A planned name is a folder of its own: never empty, never a path (parse_pipeline's rules
        // keep `/` out of job keys and matrix values; this is not trusted to be so).
        if (job.name.find('/') != std::string::npos || !is_plain_relative_path(job.name))
            return fail(JobState::Error, "the needed job " + id + " has no name its artifacts can be put under ('" + job.name + "')");
        folders.push_back(job.name);
        // Artifacts are files on the host that ran the job; in a fleet that may be another host,
        // and they are not fetched from it (yet): said in the log, not silently missing.
        if (!job.artifacts.empty() && !job.host.empty() && job.host != m_runner.m_config.host) {
            m_log.event({{"type", "warning"},
                         {"message", "the artifacts of " + job.name + " are on host " + job.host + ", which ran it, not on this host (" +
                                         m_runner.m_config.host + "): not copied"}});
            continue;
        }
        for (size_t i = 0; i < job.artifacts.size(); ++i) {
            // The names came from a guest's listing: one that would leave its folder is dropped.
            if (!is_plain_relative_path(job.artifacts[i])) {
                m_log.event({{"type", "warning"},
                             {"message", "artifact '" + job.artifacts[i] + "' of " + job.name + " is not a plain path: not copied"}});
                continue;
            }
            files.push_back(NeededArtifact{m_runner.artifact_path(id, i), job.name + "/" + job.artifacts[i]});
        }
    }
    const std::string path = m_job_dir + "/needs.tar";
    auto written = write_needs_tar(path, folders, files, kMaxNeedsBytes);
    if (!written.ok()) {
        ::unlink(path.c_str());
        // Too much is the pipeline's (its jobs' artifacts together); anything else is the host's.
        const bool too_large = written.error().code == ErrorCode::TooLarge;
        return fail(JobState::Error, written.error().message, !too_large);
    }
    m_needs_tar = path;
    for (const auto& why : written->left_out)
        m_log.event({{"type", "warning"}, {"message", "a needed job's artifact is gone from the host: " + why}});
    m_log.event({{"type", "needs"}, {"jobs", m_job.needs.size()}, {"files", written->files}, {"bytes", written->bytes}});
    return true;
}

bool JobAttempt::copy_needs(AttemptVm& vm) {
    if (m_needs_tar.empty()) return true;
    const int64_t start = monotonic_ms();
    proto::ExecRequest extract;
    extract.argv = {"sh", "-e", "-c", kExtractNeeds};
    extract.cwd = "/";
    extract.timeout_ms = static_cast<uint64_t>(std::min<int64_t>(left_ms(), 600000));
    vm::ExecIo io;
    io.stdin_source = file_byte_source(m_needs_tar);
    auto done = vm.agent->exec_collect(extract, std::move(io), 1 << 20);
    if (!done.ok()) return vm_failure("copying the needed jobs' artifacts into the VM", done.error());
    if (done->result.shell_status() != 0) {
        if (m_control.stopped()) return stopped_by_watchdog();
        // The bake may have run before it (the job's own code): a VM it broke is worth a retry
        // no more than a checkout that failed; both are retried the same way.
        return fail(JobState::Error, "copying the needed jobs' artifacts into the VM (status " +
                                         std::to_string(done->result.shell_status()) + "): " + last_lines(done->stderr_data, 5),
                    true);
    }
    event(vm, {{"type", "needs_copied"}, {"copy_ms", monotonic_ms() - start}});
    return true;
}

}  // namespace kiln::ci
