// Finding and opening the kiln.agent virtio-serial port, retrying until the device is there.
#include "agent/port.h"

#include <dirent.h>
#include <fcntl.h>
#include <time.h>

#include <cerrno>
#include <fstream>

#include "agent/log.h"
#include "base/errno_error.h"

namespace kiln::agent {

Result<std::string> find_agent_port(const std::string& sysfs_dir, const std::string& dev_dir) {
    DIR* dir = opendir(sysfs_dir.c_str());
    if (!dir) return errno_error("list " + sysfs_dir);
    std::string found;
    while (struct dirent* entry = readdir(dir)) {
        std::string port = entry->d_name;
        if (port == "." || port == "..") continue;
        std::ifstream name_file(sysfs_dir + "/" + port + "/name");
        std::string name;
        if (!name_file || !std::getline(name_file, name)) continue;
        while (!name.empty() && (name.back() == '\n' || name.back() == ' ' || name.back() == '\r')) name.pop_back();
        if (name == kAgentPortName) {
            found = dev_dir + "/" + port;
            break;
        }
    }
    closedir(dir);
    if (found.empty()) return make_error("not_found", std::string("no virtio-serial port named ") + kAgentPortName);
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
