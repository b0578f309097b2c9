// The `kiln sandbox` subcommands that live in files of their own (exec, cp, pause and resume).
#pragma once

#include "cli/cli_context.h"

namespace kiln::cli {

void add_sandbox_exec_command(CLI::App& group, CliContext& ctx);  // sandbox_exec.cpp
void add_sandbox_cp_command(CLI::App& group, CliContext& ctx);    // sandbox_cp.cpp
// pause and resume, under `kiln sandbox` and at the top level too (sandbox_pause.cpp).
void add_sandbox_pause_commands(CLI::App& parent, CliContext& ctx);

}  // namespace kiln::cli
