// Writes agent diagnostics as single write() calls so lines never interleave.
#include "agent/log.h"

#include <unistd.h>

namespace kiln::agent {

void log_line(const std::string& message) {
    std::string line = "kiln-agent: " + message + "\n";
    (void)!::write(2, line.data(), line.size());
}

}  // namespace kiln::agent
