// The commands started through envd's process.Process, per sandbox, while they run. A command
// outlives the Start stream that launched it (E2B's background commands): kilnd runs its exec on a
// thread of its own, and any number of streams (Start, then Connect) watch its output. Output
// while nobody watches is dropped; a watcher that falls behind by more than kMaxQueuedBytes loses
// the excess rather than growing kilnd's memory. Stdin is a pipe the exec reads until CloseStdin.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "kilnd/e2b/envd_messages.h"
#include "proto/messages.h"

namespace kiln::daemon::e2b {

struct ProcessOutput {
    enum class Kind { Start, Stdout, Stderr, End };
    Kind kind = Kind::Stdout;
    std::string data;
    // For End: the exec's result, or why it failed.
    std::optional<proto::ExecResult> result;
    std::optional<Error> error;
};

// One watcher's queue of a command's events.
class ProcessWatch {
public:
    static constexpr size_t kMaxQueuedBytes = 4 * 1024 * 1024;
    void push(ProcessOutput output);
    // The next event, waiting up to `timeout`; nothing when none came.
    std::optional<ProcessOutput> next(std::chrono::milliseconds timeout);

private:
    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<ProcessOutput> m_queue;
    size_t m_queued = 0;
};

class RunningProcess {
public:
    RunningProcess(std::string sandbox_id, ProcessConfig config, std::optional<std::string> tag, bool has_stdin)
        : m_sandbox_id(std::move(sandbox_id)), m_config(std::move(config)), m_tag(std::move(tag)), m_has_stdin(has_stdin) {}

    const std::string& sandbox_id() const { return m_sandbox_id; }
    const ProcessConfig& config() const { return m_config; }
    const std::optional<std::string>& tag() const { return m_tag; }
    int pid() const;
    uint32_t stream() const;

    std::shared_ptr<ProcessWatch> watch();
    void unwatch(const std::shared_ptr<ProcessWatch>& watch);
    void publish(ProcessOutput output);
    void started(uint32_t stream, int pid);

    // Stdin: the exec reads the pipe's other end. Writes wait a bounded time for room.
    Status write_stdin(std::string_view data);
    Status close_stdin();
    // For the exec: the pipe's read end (-1 without stdin). Called once, before the exec.
    Result<int> open_stdin();

private:
    const std::string m_sandbox_id;
    const ProcessConfig m_config;
    const std::optional<std::string> m_tag;
    const bool m_has_stdin;
    mutable std::mutex m_mutex;
    std::vector<std::shared_ptr<ProcessWatch>> m_watches;
    int m_pid = 0;
    uint32_t m_stream = 0;
    UniqueFd m_stdin_read;
    UniqueFd m_stdin_write;
};

// The running commands of every sandbox, by guest pid, and the threads that run them.
class ProcessTable {
public:
    ProcessTable() = default;
    ProcessTable(const ProcessTable&) = delete;
    ProcessTable& operator=(const ProcessTable&) = delete;
    // Kills what still runs (SIGKILL through the agent) and waits for its threads: kilnd stopping
    // its listener leaves no thread behind that uses a sandbox.
    ~ProcessTable();

    // Runs `request` in the leased sandbox on a thread of its own, feeding `process`'s watchers
    // and keeping it in the table from its start until its end. Returns at once.
    void launch(const std::shared_ptr<SandboxLease>& lease, const std::shared_ptr<RunningProcess>& process,
                proto::ExecRequest request);

    void add(const std::shared_ptr<RunningProcess>& process);
    void remove(const std::shared_ptr<RunningProcess>& process);
    std::vector<std::shared_ptr<RunningProcess>> list(const std::string& sandbox_id) const;
    std::shared_ptr<RunningProcess> by_pid(const std::string& sandbox_id, int pid) const;
    std::shared_ptr<RunningProcess> by_tag(const std::string& sandbox_id, const std::string& tag) const;

private:
    void run(std::shared_ptr<SandboxLease> lease, std::shared_ptr<RunningProcess> process, proto::ExecRequest request);

    mutable std::mutex m_mutex;
    std::map<std::string, std::map<int, std::shared_ptr<RunningProcess>>> m_by_sandbox;
    // The exec threads; a finished one is joined at the next launch or at the end.
    struct Runner {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> done;
        std::shared_ptr<SandboxLease> lease;
        std::shared_ptr<RunningProcess> process;
    };
    std::mutex m_runners_mutex;
    std::vector<Runner> m_runners;
};

}  // namespace kiln::daemon::e2b
