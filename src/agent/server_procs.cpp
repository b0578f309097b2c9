// The server's side of the process table (process_table.h): exec's keep and user, the procs,
// attach, signal and input ops, Detach frames, and the kept execs' turn in the poll loop.
#include <sys/stat.h>

#include "agent/server.h"

namespace kiln::agent {

using nlohmann::json;
using proto::FrameType;

Result<std::vector<gid_t>> Server::apply_exec_user(proto::ExecRequest& request) {
    if (request.user.empty()) return std::vector<gid_t>{};
    UserAccount account = TRY(lookup_user(request.user, m_config.accounts));
    request.uid = account.uid;
    request.gid = account.gid;
    // What login sets, under what the request gives.
    std::map<std::string, std::string> env{{"HOME", account.home}, {"USER", account.name}, {"LOGNAME", account.name}};
    for (auto& [name, value] : request.env) env[name] = std::move(value);
    request.env = std::move(env);
    if (request.cwd.empty()) {
        // A user whose home is missing (a system account's /nonexistent) starts in / as login does.
        struct stat st;
        const bool home_is_dir = !account.home.empty() && account.home.front() == '/' &&
                                 stat(account.home.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
        request.cwd = home_is_dir ? account.home : "/";
    }
    return std::move(account.groups);
}

void Server::add_exec(uint32_t stream, const proto::ExecRequest& request, std::unique_ptr<ExecSession> session) {
    if (!request.keep) {
        m_execs.emplace(stream, std::move(session));
        return;
    }
    proto::ProcessInfo info;
    info.argv = request.argv.empty() ? std::vector<std::string>{"/bin/sh", "-c", request.shell} : request.argv;
    info.env = request.env;
    info.cwd = request.cwd;
    info.tag = request.tag;
    info.user = request.user;
    info.stdin = request.stdin;
    m_processes.add(stream, std::move(session), std::move(info));
}

bool Server::is_kept_op(const std::string& op) const {
    return op == proto::op::kProcs || op == proto::op::kAttach || op == proto::op::kSignal || op == proto::op::kInput;
}

void Server::handle_kept_op(uint32_t stream, const std::string& op, const json& body) {
    auto answer = [&](const Status& status) {
        if (status.ok()) m_outbox.push_json(FrameType::Result, stream, json::object());
        else m_outbox.push_error(stream, status.error().code, status.error().message);
    };
    if (op == proto::op::kProcs) {
        json processes = json::array();
        for (const auto& info : m_processes.list_running()) processes.push_back(proto::to_json(info));
        m_outbox.push_json(FrameType::Result, stream, json{{"processes", std::move(processes)}});
        return;
    }
    if (op == proto::op::kAttach) {
        auto request = proto::parse_pid_request(body);
        if (!request.ok()) return answer(request.error());
        auto status = m_processes.attach(stream, request->pid, m_outbox);
        if (!status.ok()) answer(status);  // attached: the stream goes on until the Result
        return;
    }
    if (op == proto::op::kSignal) {
        auto request = proto::parse_signal_request(body);
        if (!request.ok()) return answer(request.error());
        return answer(m_processes.signal(request->pid, request->signal));
    }
    if (op == proto::op::kInput) {
        auto request = proto::parse_input_request(body);
        if (!request.ok()) return answer(request.error());
        return answer(m_processes.input(request->pid, request->data, request->eof));
    }
}

bool Server::handle_process_frame(uint32_t stream, proto::Frame& frame) {
    if (auto it = m_execs.find(stream); it != m_execs.end()) {
        handle_exec_frame(stream, *it->second, frame);
        return true;
    }
    if (!m_processes.has_stream(stream)) return false;
    // Stdin, Eof and Signal on any stream attached to a kept exec reach that exec.
    if (ExecSession* exec = m_processes.session_of(stream)) handle_exec_frame(stream, *exec, frame);
    return true;
}

void Server::handle_detach(uint32_t stream) {
    if (m_processes.has_stream(stream)) {
        m_processes.detach(stream, m_outbox);
    } else if (m_execs.count(stream)) {
        // Only a kept exec can outlive its stream: this one goes as on abandon, and says so.
        end_stream_with_error(stream, make_error(ErrorCode::InvalidArgument,
                                                 "detach of an exec started without keep: its process tree was killed"));
    } else if (is_active(stream)) {
        end_stream_with_error(stream, make_error(ErrorCode::InvalidArgument,
                                                 "a detach frame ends only exec and attach streams"));
    }
    // Otherwise the stream has ended already and the Detach crossed our Result: nothing to do.
}

bool Server::watch_kept_fds() {
    bool reap_by_polling = false;
    for (const auto& [pid, process] : m_processes.processes()) {
        if (!process.running()) continue;
        const ExecSession& exec = *process.session;
        if (exec.pidfd() >= 0) watch(exec.pidfd(), POLLIN, PollKind::ChildExit, 0);
        else if (!exec.exited()) reap_by_polling = true;
        // Attached: back-pressure as for any exec. Detached: read and dropped even while the host
        // is behind, so the process never blocks on a full pipe.
        if (process.streams.empty() || !m_outbox.congested()) {
            const auto tag = static_cast<uint32_t>(pid);
            if (exec.stdout_fd() >= 0) watch(exec.stdout_fd(), POLLIN, PollKind::KeptOutput, tag);
            if (exec.stderr_fd() >= 0) watch(exec.stderr_fd(), POLLIN, PollKind::KeptOutput, tag);
        }
        if (exec.stdin_fd_to_poll() >= 0)
            watch(exec.stdin_fd_to_poll(), POLLOUT, PollKind::KeptStdin, static_cast<uint32_t>(pid));
    }
    return reap_by_polling;
}

void Server::handle_kept_fd(const PollTag& tag, int fd) {
    const auto pid = static_cast<pid_t>(tag.stream);
    auto it = m_processes.processes().find(pid);
    if (it == m_processes.processes().end() || !it->second.running()) return;
    if (tag.kind == PollKind::KeptStdin) {
        m_processes.write_stdin(pid, fd);
        return;
    }
    if (!it->second.streams.empty() && m_outbox.congested()) return;
    m_processes.read_output(pid, fd, m_outbox, m_scratch.data(), m_scratch.size());
}

void Server::advance_kept_processes() {
    m_processes.expire_deadlines(Clock::now());
    m_processes.finish_exited(m_outbox, m_scratch.data(), m_scratch.size(), [this](std::optional<CgroupLeaf> leaf) {
        if (leaf) m_leaves.release(std::move(*leaf));
    });
}

}  // namespace kiln::agent
