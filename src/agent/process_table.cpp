// The kept execs' table: attach fan-out, detach, signal and stdin by pid, and their end.
#include "agent/process_table.h"

#include <sys/wait.h>

#include <algorithm>

namespace kiln::agent {
namespace {

Error not_found(int pid) {
    return make_error(ErrorCode::NotFound, "no kept process " + std::to_string(pid) + " (never kept, or exited)");
}

}  // namespace

ProcessTable::~ProcessTable() {
    for (auto& [pid, process] : m_processes) {
        if (!process.session || process.session->exited()) continue;
        process.session->kill_tree();
        waitpid(pid, nullptr, 0);
        process.session->set_exited(0);
    }
}

size_t ProcessTable::running_count() const {
    return static_cast<size_t>(std::count_if(m_processes.begin(), m_processes.end(),
                                             [](const auto& entry) { return entry.second.running(); }));
}

void ProcessTable::add(uint32_t stream, std::unique_ptr<ExecSession> session, proto::ProcessInfo info) {
    const pid_t pid = session->pid();
    info.pid = pid;
    // A finished entry of a recycled pid is replaced: its attachers have had their Result.
    Process& process = m_processes[pid];
    process = Process{};
    process.session = std::move(session);
    process.info = std::move(info);
    process.streams.push_back(stream);
    m_streams[stream] = pid;
}

ExecSession* ProcessTable::session_of(uint32_t stream) {
    auto it = m_streams.find(stream);
    if (it == m_streams.end()) return nullptr;
    auto process = m_processes.find(it->second);
    return process == m_processes.end() ? nullptr : process->second.session.get();
}

Status ProcessTable::attach(uint32_t stream, int pid, FrameOutbox& out) {
    auto it = m_processes.find(pid);
    if (it == m_processes.end()) return not_found(pid);
    Process& process = it->second;
    if (process.result) {
        out.push_json(proto::FrameType::Result, stream, proto::to_json(*process.result));
        return ok_status();
    }
    process.streams.push_back(stream);
    m_streams[stream] = pid;
    return ok_status();
}

void ProcessTable::detach(uint32_t stream, FrameOutbox& out) {
    drop_stream(stream);
    proto::ExecResult result;
    result.detached = true;
    out.push_json(proto::FrameType::Result, stream, proto::to_json(result));
}

void ProcessTable::drop_stream(uint32_t stream) {
    auto it = m_streams.find(stream);
    if (it == m_streams.end()) return;
    if (auto process = m_processes.find(it->second); process != m_processes.end())
        std::erase(process->second.streams, stream);
    m_streams.erase(it);
}

void ProcessTable::drop_all_streams() {
    for (auto& [pid, process] : m_processes) process.streams.clear();
    m_streams.clear();
}

std::vector<proto::ProcessInfo> ProcessTable::list_running() const {
    std::vector<proto::ProcessInfo> list;
    for (const auto& [pid, process] : m_processes)
        if (process.running()) list.push_back(process.info);
    return list;
}

ProcessTable::Process* ProcessTable::running(int pid, Status& error) {
    auto it = m_processes.find(pid);
    if (it == m_processes.end() || !it->second.running() || it->second.session->exited()) {
        error = not_found(pid);
        return nullptr;
    }
    return &it->second;
}

Status ProcessTable::signal(int pid, int sig) {
    Status error = ok_status();
    Process* process = running(pid, error);
    if (!process) return error;
    process->session->signal_tree(sig);
    return ok_status();
}

Status ProcessTable::input(int pid, std::string_view data, bool eof) {
    Status error = ok_status();
    Process* process = running(pid, error);
    if (!process) return error;
    if (!process->session->takes_stdin())
        return make_error(ErrorCode::InvalidArgument,
                          "process " + std::to_string(pid) + " was started without stdin (exec's \"stdin\": true)");
    if (!data.empty()) process->session->add_stdin(data);
    if (eof) process->session->close_stdin_after_backlog();
    return ok_status();
}

void ProcessTable::read_output(pid_t pid, int fd, FrameOutbox& out, char* scratch, size_t scratch_size) {
    auto it = m_processes.find(pid);
    if (it == m_processes.end() || !it->second.running()) return;
    it->second.session->read_output(fd, out, it->second.streams, scratch, scratch_size);
}

void ProcessTable::write_stdin(pid_t pid, int fd) {
    auto it = m_processes.find(pid);
    if (it == m_processes.end() || !it->second.running()) return;
    if (it->second.session->stdin_fd_to_poll() == fd) it->second.session->write_stdin();
}

bool ProcessTable::set_exited(pid_t pid, int wait_status) {
    auto it = m_processes.find(pid);
    if (it == m_processes.end() || !it->second.running()) return false;
    it->second.session->set_exited(wait_status);
    return true;
}

void ProcessTable::try_reap() {
    for (auto& [pid, process] : m_processes)
        if (process.running()) process.session->try_reap();
}

void ProcessTable::expire_deadlines(Clock::time_point now) {
    for (auto& [pid, process] : m_processes) {
        if (!process.running()) continue;
        auto deadline = process.session->deadline();
        if (deadline && *deadline <= now) process.session->expire();
    }
}

void ProcessTable::finish_exited(FrameOutbox& out, char* scratch, size_t scratch_size,
                                 const std::function<void(std::optional<CgroupLeaf>)>& release) {
    const auto now = Clock::now();
    for (auto it = m_processes.begin(); it != m_processes.end();) {
        Process& process = it->second;
        if (process.running() && process.session->exited()) {
            process.result = process.session->finish(out, process.streams, scratch, scratch_size);
            for (uint32_t stream : process.streams) {
                out.push_json(proto::FrameType::Result, stream, proto::to_json(*process.result));
                m_streams.erase(stream);
            }
            process.streams.clear();
            release(process.session->take_cgroup());
            process.session.reset();
            process.finished_at = now;
        }
        if (!process.running() && now - process.finished_at >= kKeepExitedFor) it = m_processes.erase(it);
        else ++it;
    }
}

std::optional<Clock::time_point> ProcessTable::next_wakeup() const {
    std::optional<Clock::time_point> next;
    auto consider = [&](Clock::time_point t) {
        if (!next || t < *next) next = t;
    };
    for (const auto& [pid, process] : m_processes) {
        if (!process.running()) consider(process.finished_at + kKeepExitedFor);
        else if (auto deadline = process.session->deadline()) consider(*deadline);
    }
    return next;
}

size_t ProcessTable::largest_stdin_backlog() const {
    size_t largest = 0;
    for (const auto& [pid, process] : m_processes)
        if (process.running()) largest = std::max(largest, process.session->stdin_backlog());
    return largest;
}

}  // namespace kiln::agent
