// Named network namespaces made the way `ip netns add` makes them, without spawning `ip`.
#include "daemon/net/netns.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <thread>

#include "base/errno_error.h"
#include "daemon/net/guest_addressing.h"

namespace kiln::daemon::net {
namespace {

std::string netns_path(const std::string& name) { return std::string(kNetnsDir) + "/" + name; }

bool valid_name(const std::string& name) {
    if (name.empty() || name.size() > 64 || name[0] == '.') return false;
    for (char c : name)
        if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
    return true;
}

// /run/netns is a shared mount point, as `ip netns` leaves it: a namespace bound there stays
// visible to processes in other mount namespaces. Done once per process.
Status prepare_netns_dir() {
    static std::mutex mutex;
    static bool done = false;
    std::lock_guard lock(mutex);
    if (done) return ok_status();
    if (::mkdir(kNetnsDir, 0755) != 0 && errno != EEXIST) return errno_error(std::string("mkdir ") + kNetnsDir);
    if (::mount("", kNetnsDir, "none", MS_SHARED | MS_REC, nullptr) != 0) {
        if (errno != EINVAL) return errno_error(std::string("make ") + kNetnsDir + " a shared mount");
        if (::mount(kNetnsDir, kNetnsDir, "none", MS_BIND | MS_REC, nullptr) != 0)
            return errno_error(std::string("bind ") + kNetnsDir);
        if (::mount("", kNetnsDir, "none", MS_SHARED | MS_REC, nullptr) != 0)
            return errno_error(std::string("make ") + kNetnsDir + " a shared mount");
    }
    done = true;
    return ok_status();
}

}  // namespace

Result<UniqueFd> create_named_netns(const std::string& name, const std::function<Status()>& inside) {
    if (!valid_name(name)) return make_error(ErrorCode::InvalidArgument, "bad network namespace name '" + name + "'");
    TRY(prepare_netns_dir());
    std::string path = netns_path(name);
    UniqueFd placeholder(::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
    if (!placeholder) {
        if (errno == EEXIST) return make_error(ErrorCode::Conflict, "network namespace " + name + " already exists");
        return errno_error("create " + path);
    }
    placeholder.reset();

    Result<UniqueFd> result = make_error(ErrorCode::Internal, "netns thread did not run");
    std::thread worker([&] {
        if (::unshare(CLONE_NEWNET) != 0) {
            result = errno_error("unshare(CLONE_NEWNET)");
            return;
        }
        if (::mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0) {
            result = errno_error("bind the new network namespace to " + path);
            return;
        }
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) {
            result = errno_error("open " + path);
            return;
        }
        if (Status st = inside(); !st.ok()) {
            result = st.error();
            return;
        }
        result = std::move(fd);
    });
    worker.join();
    if (!result.ok()) (void)remove_named_netns(name);
    return result;
}

Result<UniqueFd> open_named_netns(const std::string& name) {
    if (!valid_name(name)) return make_error(ErrorCode::InvalidArgument, "bad network namespace name '" + name + "'");
    UniqueFd fd(::open(netns_path(name).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) return make_error(ErrorCode::NotFound, "no network namespace " + name);
        return errno_error("open " + netns_path(name));
    }
    return fd;
}

Status rename_named_netns(const std::string& name, const std::string& new_name) {
    if (!valid_name(name) || !valid_name(new_name))
        return make_error(ErrorCode::InvalidArgument, "bad network namespace name '" + name + "' or '" + new_name + "'");
    TRY(prepare_netns_dir());
    std::string from = netns_path(name), to = netns_path(new_name);
    UniqueFd placeholder(::open(to.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
    if (!placeholder) {
        if (errno == EEXIST) return make_error(ErrorCode::Conflict, "network namespace " + new_name + " already exists");
        return errno_error("create " + to);
    }
    placeholder.reset();
    if (::mount(from.c_str(), to.c_str(), "none", MS_BIND, nullptr) != 0) {
        Error e = errno_error("bind network namespace " + name + " to " + to);
        (void)::unlink(to.c_str());
        return e;
    }
    return remove_named_netns(name);
}

Status remove_named_netns(const std::string& name) {
    if (!valid_name(name)) return make_error(ErrorCode::InvalidArgument, "bad network namespace name '" + name + "'");
    std::string path = netns_path(name);
    // MNT_DETACH: a process still inside (or holding an fd) keeps the namespace, not the name.
    if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
        return errno_error("unmount " + path);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("remove " + path);
    return ok_status();
}

std::vector<std::string> list_named_netns(const std::string& prefix) {
    std::vector<std::string> names;
    DIR* dir = ::opendir(kNetnsDir);
    if (!dir) return names;
    while (struct dirent* e = ::readdir(dir)) {
        std::string n = e->d_name;
        if (n.compare(0, prefix.size(), prefix) == 0 && n != "." && n != "..") names.push_back(n);
    }
    ::closedir(dir);
    return names;
}

Status run_in_netns(int netns_fd, const std::function<Status()>& fn) {
    Status result = make_error(ErrorCode::Internal, "netns thread did not run");
    std::thread worker([&] {
        if (::setns(netns_fd, CLONE_NEWNET) != 0) {
            result = errno_error("setns(CLONE_NEWNET)");
            return;
        }
        result = fn();
    });
    worker.join();
    return result;
}

Status write_sysctl(const std::string& path, const std::string& value) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return errno_error("open " + path);
    if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
        return errno_error("write " + path);
    return ok_status();
}

}  // namespace kiln::daemon::net
