// Finding and opening the kiln.agent virtio-serial port, retrying until the device is there.
#include "agent/port.h"

#include <dirent.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "agent/log.h"
#include "base/errno_error.h"

namespace kiln::agent {

namespace {

// The first line of a small file (a sysfs attribute), without its end of line; nothing on error.
// Plain read(): an ifstream would set up C++ locales first, ~20 ms of emulated CPU during boot.
std::string read_first_line(const std::string& path) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return {};
    char buf[256];
    ssize_t n;
    do n = ::read(fd.get(), buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return {};
    std::string line(buf, static_cast<size_t>(n));
    line.resize(std::min(line.find('\n'), line.size()));
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
    return line;
}

}  // namespace

Result<std::string> find_agent_port(const std::string& sysfs_dir, const std::string& dev_dir) {
    DIR* dir = opendir(sysfs_dir.c_str());
    if (!dir) return errno_error("list " + sysfs_dir);
    std::string found;
    while (struct dirent* entry = readdir(dir)) {
        std::string port = entry->d_name;
        if (port == "." || port == "..") continue;
        if (read_first_line(sysfs_dir + "/" + port + "/name") == kAgentPortName) {
            found = dev_dir + "/" + port;
            break;
        }
    }
    closedir(dir);
    if (found.empty()) return make_error(ErrorCode::NotFound, std::string("no virtio-serial port named ") + kAgentPortName);
    return found;
}

Result<UniqueFd> open_agent_port() {
    std::string path = TRY(find_agent_port());
    UniqueFd fd(open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!fd) return errno_error("open " + path);
    return fd;
}

UniqueFd wait_for_agent_port() {
    std::string last_error;
    for (;;) {
        auto port = open_agent_port();
        if (port.ok()) return std::move(port).value();
        // Say it once per distinct problem; a missing host end is routine, a missing device is not.
        if (port.error().message != last_error) {
            last_error = port.error().message;
            log_line("waiting for the host channel: " + last_error);
        }
        struct timespec pause {0, 20 * 1000 * 1000};
        nanosleep(&pause, nullptr);
    }
}

}  // namespace kiln::agent
