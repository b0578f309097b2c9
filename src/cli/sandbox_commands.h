// The `kiln sandbox` subcommands that live in files of their own (exec, cp).
#pragma once

#include "cli/cli_context.h"

namespace kiln::cli {

void add_sandbox_exec_command(CLI::App& group, CliContext& ctx);  // sandbox_exec.cpp
void add_sandbox_cp_command(CLI::App& group, CliContext& ctx);    // sandbox_cp.cpp

}  // namespace kiln::cli
