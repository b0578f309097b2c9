// The agent's end of the host channel: the virtio-serial port named kiln.agent.
#pragma once

#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kiln::agent {

inline constexpr const char* kAgentPortName = "kiln.agent";

// The device node of the port whose <sysfs_dir>/<vportNpM>/name is kiln.agent: <dev_dir>/<vportNpM>.
Result<std::string> find_agent_port(const std::string& sysfs_dir = "/sys/class/virtio-ports",
                                    const std::string& dev_dir = "/dev");

// Opens the port O_RDWR | O_NONBLOCK | O_CLOEXEC.
Result<UniqueFd> open_agent_port();

// Retries open_agent_port() every 20 ms until it works; never gives up (PID 1 must not exit).
UniqueFd wait_for_agent_port();

}  // namespace kiln::agent
