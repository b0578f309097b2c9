// What /proc says of a process, for tests that check a jailed one: a status field and the
// identity of one of its namespaces.
#pragma once

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace kiln::test {

// The value of `name:` in /proc/PID/status, leading blanks removed ("" if absent or empty).
inline std::string status_field(pid_t pid, const std::string& name) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(name + ":", 0) == 0) {
            std::string value = line.substr(name.size() + 1);
            size_t start = value.find_first_not_of(" \t");
            return start == std::string::npos ? "" : value.substr(start);
        }
    return "";
}

// The tab-separated fields of a status value ("1000\t1000\t1000\t1000" for Uid).
inline std::vector<std::string> status_ids(const std::string& value) {
    std::vector<std::string> ids;
    std::istringstream in(value);
    for (std::string id; std::getline(in, id, '\t');) ids.push_back(id);
    return ids;
}

// "net:[4026531833]" for ("1234" or "self", "net").
inline std::string namespace_of(const std::string& pid, const std::string& ns) {
    char buf[128] = {};
    ssize_t n = ::readlink(("/proc/" + pid + "/ns/" + ns).c_str(), buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, n) : "";
}

}  // namespace kiln::test
