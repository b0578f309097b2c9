// ChildProcess: one spawned process, owned: waited on through a pidfd, SIGKILLed and reaped on destruction.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/unique_fd.h"

namespace kiln {

// How a process ended.
struct ExitStatus {
    int exit_code = -1;  // valid when signal == 0
    int signal = 0;      // the signal that killed it, or 0

    bool success() const { return signal == 0 && exit_code == 0; }
    // The shell convention: the exit code, or 128 + signal.
    int shell_status() const { return signal ? 128 + signal : exit_code; }
    // "exited with status 1" or "was killed by signal 9 (Killed)".
    std::string describe() const;
};

// The environment a spawned child gets unless its caller chooses another: PATH (the standard
// system directories, not ours) and LANG=C.UTF-8. Nothing of this process's environment, which
// may hold secrets (KILN_CI_SECRET_*, tokens), reaches a child by default.
std::vector<std::string> minimal_environment();
// This process's own environment as NAME=value entries, for a child that acts for the user who
// ran us (the CLI's git, a test's helper), never for what kilnd starts.
std::vector<std::string> inherited_environment();
// execvp's search, in the parent, against the PATH that `env` names (kDefaultPath without one):
// an absolute path for `name` (itself when it has a '/'), or not_found / permission_denied.
Result<std::string> find_program(const std::string& name, const std::vector<std::string>& env);

struct SpawnOptions {
    static constexpr int kInherit = -2;  // keep the parent's fd 0/1/2
    static constexpr int kDevNull = -1;  // /dev/null

    std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
    std::string cwd;                // empty: the parent's
    int stdin_fd = kDevNull;        // or an fd the child gets as its 0/1/2 (the caller keeps its own)
    int stdout_fd = kInherit;
    int stderr_fd = kInherit;
    // PR_SET_PDEATHSIG(SIGKILL): the child dies when the *thread* that spawned it exits, so spawn
    // from a thread that lives as long as the child should (main, or a long-lived worker).
    bool die_with_parent = true;
    // setsid(): no controlling terminal and its own process group, so a terminal's Ctrl-C reaches
    // only us and we decide how the child stops.
    bool new_session = false;
    // Descriptors the child inherits under the same numbers (each > 2), e.g. a tap fd for QEMU.
    // Everything else above 2 is still closed at exec.
    std::vector<int> keep_fds;
    // The child's whole environment (NAME=value entries, given to execve). argv[0] without a '/'
    // is looked up in *this* environment's PATH (the default PATH when it has none).
    std::vector<std::string> env = minimal_environment();
    // Another user for the child (kilnd is root): no supplementary groups, then this gid and uid,
    // before exec. With `bind_source`, the child first gets a mount namespace of its own in which
    // that host folder also appears at `bind_target`: a folder under kilnd's 0700 data dir that
    // the new user can then reach (git on the host: ci/jobs/git_source.cpp).
    struct RunAs {
        uid_t uid = 0;
        gid_t gid = 0;
        std::string bind_source, bind_target;
    };
    std::optional<RunAs> run_as;
};

// Every fd other than the chosen 0/1/2 is closed in the child. SIGCHLD must not be SIG_IGN in the
// parent (that would reap children behind our back). Thread-safe.
class ChildProcess {
public:
    static Result<std::unique_ptr<ChildProcess>> spawn(const SpawnOptions& options);
    // Takes ownership of a child this process started some other way (e.g. clone3 into a jail):
    // `pidfd` names it, and it must be this process's child (reaped here).
    static std::unique_ptr<ChildProcess> adopt(pid_t pid, UniqueFd pidfd, std::string name) {
        return std::unique_ptr<ChildProcess>(new ChildProcess(pid, std::move(pidfd), std::move(name)));
    }
    ~ChildProcess();

    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    pid_t pid() const { return m_pid; }
    // Becomes readable (POLLIN) when the process exits; usable in the caller's own poll loop.
    int pidfd() const { return m_pidfd.get(); }
    const std::string& name() const { return m_name; }

    // Sends `sig` through the pidfd (never to a recycled pid). Succeeds if the process is already gone.
    Status kill(int sig);
    // Waits up to `timeout` for the process to exit and reaps it; nothing on timeout.
    // A zero timeout only checks.
    std::optional<ExitStatus> wait_for(Millis timeout);
    // The exit status once reaped.
    std::optional<ExitStatus> exit_status() const;
    // SIGKILL, then wait and reap.
    ExitStatus kill_and_reap();

private:
    ChildProcess(pid_t pid, UniqueFd pidfd, std::string name)
        : m_pid(pid), m_pidfd(std::move(pidfd)), m_name(std::move(name)) {}
    std::optional<ExitStatus> try_reap_locked();

    const pid_t m_pid;
    const UniqueFd m_pidfd;
    const std::string m_name;
    mutable std::mutex m_mutex;
    std::optional<ExitStatus> m_status;  // guarded by m_mutex
};

// After fork or clone: waits for the child's exec. A child that failed before it wrote `size`
// bytes (its failure report) to the CLOEXEC pipe `err_read` and exited: true, the report in
// `report`, the child reaped. A successful exec closes the pipe: false.
bool child_failed_before_exec(int err_read, pid_t pid, void* report, size_t size);

// Between fork and exec: no signal blocked, every handler back to its default, as a fresh
// process has them (async-signal-safe: raw syscalls only).
void reset_signals_in_child();

struct CapturedRun {
    ExitStatus status;
    std::string output;  // stdout and stderr interleaved, at most max_output bytes
};

// Runs argv to completion with stdin from /dev/null, capturing its output; kills it on timeout.
// The child gets `env` (by default minimal_environment()).
Result<CapturedRun> run_and_capture(const std::vector<std::string>& argv, Millis timeout,
                                    size_t max_output = 256 * 1024,
                                    const std::vector<std::string>& env = minimal_environment());
// The same for a child as `options` describe it (argv, env, run_as; its stdio is the capture's).
// `watch`, when given, is called about every 200 ms while the child runs: an error from it kills
// the child and is returned (e.g. a fetch whose repository passed its size cap).
Result<CapturedRun> run_and_capture(const SpawnOptions& options, Millis timeout, size_t max_output,
                                    const std::function<Status()>& watch = {});

}  // namespace kiln
