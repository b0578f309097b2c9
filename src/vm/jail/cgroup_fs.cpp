// Reads, writes and removals on cgroupfs, with the errno kept so callers can tell "gone" from "failed".
#include "vm/jail/cgroup_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>
#include <utility>
#include <vector>

#include "base/errno_error.h"
#include "base/unique_fd.h"
#include "vm/jail/cgroup_parse.h"

namespace kiln::vm::jail {
namespace {

constexpr size_t kMaxCgroupFile = 64 * 1024;

// 0 and the text, or the errno of the failed step.
int read_small(const std::string& path, std::string& out) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno;
    out.clear();
    char buffer[4096];
    while (out.size() < kMaxCgroupFile) {
        ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) break;
        out.append(buffer, static_cast<size_t>(n));
    }
    return 0;
}

}  // namespace

Result<std::vector<std::string>> list_child_cgroups(const std::string& dir) {
    std::vector<std::string> names;
    DIR* handle = ::opendir(dir.c_str());
    if (!handle) {
        if (errno == ENOENT) return names;
        return errno_error("opendir " + dir);
    }
    while (struct dirent* entry = ::readdir(handle)) {
        std::string name = entry->d_name;
        if (name == "." || name == "..") continue;
        bool is_dir = entry->d_type == DT_DIR;
        if (entry->d_type == DT_UNKNOWN) {
            struct stat st;
            is_dir = ::lstat((dir + "/" + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
        }
        if (is_dir) names.push_back(std::move(name));
    }
    ::closedir(handle);
    return names;
}

namespace {

// SIGKILLs `pids`, read from `dir`'s cgroup.procs, without ever signalling a stranger: a pid read
// there may exit and be reused before the kill. A pidfd pins one process; the ones still listed in
// cgroup.procs after their pidfds were opened are surely in this cgroup. Without pidfds (Linux
// before 5.3) plain kill(2) it is.
void kill_listed(const std::string& dir, const std::vector<int>& pids) {
    std::vector<std::pair<int, UniqueFd>> pinned;
    for (int pid : pids) {
        int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
        if (pidfd >= 0) {
            pinned.emplace_back(pid, UniqueFd(pidfd));
        } else if (errno != ESRCH) {  // no pidfds (ENOSYS), or none left (EMFILE)
            ::kill(pid, SIGKILL);
        }
    }
    if (pinned.empty()) return;
    std::string procs;
    if (read_small(dir + "/cgroup.procs", procs) != 0) return;
    const std::vector<int> still = parse_pids(procs);
    for (const auto& [pid, pidfd] : pinned) {
        if (std::find(still.begin(), still.end(), pid) != still.end())
            ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
    }
}

Status empty_and_remove(const std::string& dir, std::chrono::steady_clock::time_point deadline) {
    for (const std::string& child : TRY(list_child_cgroups(dir))) TRY(empty_and_remove(dir + "/" + child, deadline));

    // cgroup.kill (v2, Linux 5.14+) kills every process in the cgroup at once, new forks included;
    // elsewhere each pid in cgroup.procs gets SIGKILL, again on every round, since a process may
    // fork between the read and the kill (the pids limit bounds how often).
    const bool has_kill_file = cgroup_file_exists(dir + "/cgroup.kill");
    auto pause = std::chrono::microseconds(100);
    std::string procs;
    while (true) {
        if (!has_kill_file || !write_cgroup_file(dir + "/cgroup.kill", "1").ok()) {
            int err = read_small(dir + "/cgroup.procs", procs);
            if (err == ENOENT) return ok_status();
            if (err != 0) return errno_error("read " + dir + "/cgroup.procs", err);
            kill_listed(dir, parse_pids(procs));
        }
        // The kernel refuses (EBUSY) while a process is still in it: a SIGKILLed one leaves when
        // its exit has torn its memory down.
        if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return ok_status();
        if (errno != EBUSY) return errno_error("rmdir " + dir);
        if (std::chrono::steady_clock::now() >= deadline) {
            (void)read_small(dir + "/cgroup.procs", procs);
            return make_error(ErrorCode::Timeout, "cgroup " + dir + " still holds " + std::to_string(parse_pids(procs).size()) +
                                                      " process(es) after SIGKILL");
        }
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::microseconds(20000));
    }
}

}  // namespace

Result<std::string> read_cgroup_file(const std::string& path) {
    std::string text;
    int err = read_small(path, text);
    if (err != 0) return errno_error("read " + path, err);
    return text;
}

Status write_cgroup_file(const std::string& path, std::string_view value) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return errno_error("open " + path);
    ssize_t n;
    do {
        n = ::write(fd.get(), value.data(), value.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno_error("write '" + std::string(value) + "' to " + path);
    if (static_cast<size_t>(n) != value.size())
        return make_error(ErrorCode::IoError, "short write of '" + std::string(value) + "' to " + path);
    return ok_status();
}

bool cgroup_file_exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

Status make_cgroup_dir(const std::string& dir, bool exist_ok) {
    if (::mkdir(dir.c_str(), 0755) == 0) return ok_status();
    if (errno == EEXIST) {
        if (exist_ok) return ok_status();
        return make_error(ErrorCode::Conflict, "cgroup " + dir + " exists already");
    }
    return errno_error("mkdir " + dir);
}

Status kill_and_remove_cgroup(const std::string& dir, std::chrono::milliseconds budget) {
    return empty_and_remove(dir, std::chrono::steady_clock::now() + budget);
}

}  // namespace kiln::vm::jail
