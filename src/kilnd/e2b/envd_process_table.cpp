#include "kilnd/e2b/envd_process_table.h"

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "vm/agent_client.h"

namespace kiln::daemon::e2b {

void ProcessWatch::push(ProcessOutput output) {
    {
        std::lock_guard lock(m_mutex);
        bool is_data = output.kind == ProcessOutput::Kind::Stdout || output.kind == ProcessOutput::Kind::Stderr;
        // A watcher this far behind loses output, never the start or the end.
        if (is_data && m_queued + output.data.size() > kMaxQueuedBytes) return;
        m_queued += output.data.size();
        m_queue.push_back(std::move(output));
    }
    m_cv.notify_all();
}

std::optional<ProcessOutput> ProcessWatch::next(std::chrono::milliseconds timeout) {
    std::unique_lock lock(m_mutex);
    if (!m_cv.wait_for(lock, timeout, [&] { return !m_queue.empty(); })) return std::nullopt;
    ProcessOutput out = std::move(m_queue.front());
    m_queue.pop_front();
    m_queued -= out.data.size();
    return out;
}

int RunningProcess::pid() const {
    std::lock_guard lock(m_mutex);
    return m_pid;
}

uint32_t RunningProcess::stream() const {
    std::lock_guard lock(m_mutex);
    return m_stream;
}

std::shared_ptr<ProcessWatch> RunningProcess::watch() {
    auto watch = std::make_shared<ProcessWatch>();
    std::lock_guard lock(m_mutex);
    m_watches.push_back(watch);
    return watch;
}

void RunningProcess::unwatch(const std::shared_ptr<ProcessWatch>& watch) {
    std::lock_guard lock(m_mutex);
    std::erase(m_watches, watch);
}

void RunningProcess::publish(ProcessOutput output) {
    std::vector<std::shared_ptr<ProcessWatch>> watches;
    {
        std::lock_guard lock(m_mutex);
        watches = m_watches;
    }
    for (const auto& w : watches) w->push(output);
}

void RunningProcess::started(uint32_t stream, int pid) {
    {
        std::lock_guard lock(m_mutex);
        m_stream = stream;
        m_pid = pid;
    }
    publish(ProcessOutput{ProcessOutput::Kind::Start, {}, std::nullopt, std::nullopt});
}

Result<int> RunningProcess::open_stdin() {
    if (!m_has_stdin) return -1;
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return make_error(ErrorCode::IoError, std::string("pipe: ") + std::strerror(errno));
    // Writes never block a request thread for long: write_stdin polls for room.
    (void)::fcntl(fds[1], F_SETFL, O_NONBLOCK);
    std::lock_guard lock(m_mutex);
    m_stdin_read.reset(fds[0]);
    m_stdin_write.reset(fds[1]);
    return fds[0];
}

Status RunningProcess::write_stdin(std::string_view data) {
    std::lock_guard lock(m_mutex);  // one writer at a time keeps SendInput calls in order
    if (!m_has_stdin)
        return make_error(ErrorCode::InvalidArgument, "the process was started without stdin (start it with stdin: true)");
    if (!m_stdin_write) return make_error(ErrorCode::InvalidArgument, "the process's stdin is closed");
    constexpr int kWaitMs = 10000;
    while (!data.empty()) {
        ssize_t n = ::write(m_stdin_write.get(), data.data(), data.size());
        if (n > 0) {
            data.remove_prefix(static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p{m_stdin_write.get(), POLLOUT, 0};
            int r = ::poll(&p, 1, kWaitMs);
            if (r == 0) return make_error(ErrorCode::ResourceExhausted, "the process has not read its stdin for 10 s");
            continue;
        }
        if (n < 0 && errno == EPIPE) return make_error(ErrorCode::InvalidArgument, "the process no longer reads its stdin");
        return make_error(ErrorCode::IoError, std::string("stdin: ") + std::strerror(errno));
    }
    return ok_status();
}

Status RunningProcess::close_stdin() {
    std::lock_guard lock(m_mutex);
    if (!m_has_stdin) return make_error(ErrorCode::InvalidArgument, "the process was started without stdin");
    m_stdin_write.reset();
    return ok_status();
}

void ProcessTable::add(const std::shared_ptr<RunningProcess>& process) {
    std::lock_guard lock(m_mutex);
    m_by_sandbox[process->sandbox_id()][process->pid()] = process;
}

void ProcessTable::remove(const std::shared_ptr<RunningProcess>& process) {
    std::lock_guard lock(m_mutex);
    auto it = m_by_sandbox.find(process->sandbox_id());
    if (it == m_by_sandbox.end()) return;
    auto p = it->second.find(process->pid());
    if (p != it->second.end() && p->second == process) it->second.erase(p);
    if (it->second.empty()) m_by_sandbox.erase(it);
}

std::vector<std::shared_ptr<RunningProcess>> ProcessTable::list(const std::string& sandbox_id) const {
    std::lock_guard lock(m_mutex);
    std::vector<std::shared_ptr<RunningProcess>> out;
    if (auto it = m_by_sandbox.find(sandbox_id); it != m_by_sandbox.end())
        for (const auto& [pid, p] : it->second) out.push_back(p);
    return out;
}

std::shared_ptr<RunningProcess> ProcessTable::by_pid(const std::string& sandbox_id, int pid) const {
    std::lock_guard lock(m_mutex);
    auto it = m_by_sandbox.find(sandbox_id);
    if (it == m_by_sandbox.end()) return nullptr;
    auto p = it->second.find(pid);
    return p == it->second.end() ? nullptr : p->second;
}

std::shared_ptr<RunningProcess> ProcessTable::by_tag(const std::string& sandbox_id, const std::string& tag) const {
    std::lock_guard lock(m_mutex);
    auto it = m_by_sandbox.find(sandbox_id);
    if (it == m_by_sandbox.end()) return nullptr;
    for (const auto& [pid, p] : it->second)
        if (p->tag() && *p->tag() == tag) return p;
    return nullptr;
}

void ProcessTable::run(std::shared_ptr<SandboxLease> lease, std::shared_ptr<RunningProcess> process,
                       proto::ExecRequest request) {
    auto end = [&](std::optional<proto::ExecResult> result, std::optional<Error> error) {
        process->publish(ProcessOutput{ProcessOutput::Kind::End, {}, std::move(result), std::move(error)});
    };
    auto stdin_fd = process->open_stdin();
    if (!stdin_fd.ok()) return end(std::nullopt, stdin_fd.error());
    vm::ExecIo io;
    io.stdin_fd = *stdin_fd;
    io.on_started = [&](uint32_t stream, int pid) {
        process->started(stream, pid);
        add(process);
    };
    io.on_stdout = [&](std::string_view data) {
        process->publish(ProcessOutput{ProcessOutput::Kind::Stdout, std::string(data), std::nullopt, std::nullopt});
    };
    io.on_stderr = [&](std::string_view data) {
        process->publish(ProcessOutput{ProcessOutput::Kind::Stderr, std::string(data), std::nullopt, std::nullopt});
    };
    auto result = lease->agent().exec(std::move(request), io);
    remove(process);
    if (result.ok()) end(*result, std::nullopt);
    else end(std::nullopt, result.error());
}

void ProcessTable::launch(const std::shared_ptr<SandboxLease>& lease, const std::shared_ptr<RunningProcess>& process,
                          proto::ExecRequest request) {
    std::lock_guard lock(m_runners_mutex);
    std::erase_if(m_runners, [](Runner& r) {
        if (!r.done->load()) return false;
        r.thread.join();
        return true;
    });
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::thread thread([this, lease, process, done, request = std::move(request)]() mutable {
        run(lease, process, std::move(request));
        done->store(true);
    });
    m_runners.push_back(Runner{std::move(thread), std::move(done), lease, process});
}

ProcessTable::~ProcessTable() {
    std::lock_guard lock(m_runners_mutex);
    for (auto& r : m_runners) {
        // An exec still starting has no stream to signal yet: ask again until it has ended.
        for (int attempt = 0; !r.done->load() && attempt < 200; ++attempt) {
            if (uint32_t stream = r.process->stream()) (void)r.lease->agent().send_signal(stream, SIGKILL);
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        r.thread.join();
    }
}

}  // namespace kiln::daemon::e2b
