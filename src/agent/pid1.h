// What the agent does first as PID 1: the mounts, hostname, environment and signal dispositions of an init.
#pragma once

#include <string>

namespace kiln::agent {

inline constexpr const char* kCgroupMount = "/sys/fs/cgroup";
inline constexpr const char* kExecCgroupRoot = "/sys/fs/cgroup/kiln";

// Sets up the guest: stdio, /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /tmp, /run, cgroup2,
// /dev/fd links, hostname "kiln", loopback up, PATH/HOME, umask, and signals. Failures are logged
// and skipped: PID 1 must keep going. Returns the cgroup folder for execs, or "" without cgroup2.
std::string setup_pid1();

}  // namespace kiln::agent
