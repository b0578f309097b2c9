// log_line: the agent's diagnostics, one line each to stderr (the serial console when PID 1).
#pragma once

#include <string>

namespace kiln::agent {

void log_line(const std::string& message);

}  // namespace kiln::agent
