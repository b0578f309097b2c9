// Shared CLI output helpers.
#include "cli/cli_context.h"

#include <unistd.h>

#include <cstdio>

namespace kiln::cli {

void print_error(const std::string& message) {
    std::string line = "kiln: " + message + "\n";
    ssize_t ignored = ::write(2, line.data(), line.size());
    (void)ignored;
}

void print_error(const Error& error) { print_error(error.message.empty() ? std::string(code_name(error.code)) : error.message); }

Progress::Progress(bool verbose) : m_enabled(verbose || ::isatty(2)) {}

void Progress::line(std::string_view text) const {
    if (!m_enabled) return;
    std::string line = "kiln: " + std::string(text) + "\n";
    ssize_t ignored = ::write(2, line.data(), line.size());
    (void)ignored;
}

}  // namespace kiln::cli
