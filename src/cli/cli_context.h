// What every kiln command shares: exit codes, the argv tail after "--", and stderr progress/error output.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace CLI {
class App;
}

namespace kiln::cli {

// Exit codes of kiln itself, following `docker run`: 125 means kiln failed (bad usage, no kernel,
// the VM died), so any other status is the command's own. 124 means the command timed out
// (like timeout(1)).
inline constexpr int kExitKilnError = 125;
inline constexpr int kExitTimeout = 124;

struct CliContext {
    int exit_code = 0;
    // Everything after the first "--" on the command line (the guest command for `vm run`).
    std::vector<std::string> trailing_args;
    bool had_separator = false;
};

// Prints "kiln: <message>" on stderr.
void print_error(const std::string& message);
void print_error(const Error& error);

// Progress lines on stderr, only when stderr is a terminal or --verbose was given.
class Progress {
public:
    explicit Progress(bool verbose);
    bool enabled() const { return m_enabled; }
    void line(std::string_view text) const;

private:
    bool m_enabled;
};

// Each command group registers its subcommands; the callbacks store their exit code in ctx.
void add_vm_commands(CLI::App& app, CliContext& ctx);
void add_doctor_command(CLI::App& app, CliContext& ctx);
void add_sandbox_commands(CLI::App& app, CliContext& ctx);   // kilnd's API: sandbox_commands.cpp
void add_template_commands(CLI::App& app, CliContext& ctx);  // kilnd's API: template_commands.cpp
void add_host_commands(CLI::App& app, CliContext& ctx);      // kilnd's API: host_commands.cpp
void add_whoami_command(CLI::App& app, CliContext& ctx);     // GET /v1/token: whoami_command.cpp
void add_ci_commands(CLI::App& app, CliContext& ctx);        // kiln ci run: ci_commands.cpp
void add_gitlab_executor_command(CLI::App& app, CliContext& ctx);  // gitlab_executor.cpp

}  // namespace kiln::cli
