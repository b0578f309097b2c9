// kiln: the command-line entry point; each command group lives in its own file.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/cli_context.h"

int main(int argc, char** argv) {
    using namespace kiln::cli;
    ::signal(SIGPIPE, SIG_IGN);  // a closed stdout is an EPIPE we handle, not a sudden death

    CliContext ctx;
    // CLI11 cannot combine "--" with a command that takes the rest of the line, so split it here.
    std::vector<char*> args(argv, argv + argc);
    for (size_t i = 1; i < args.size(); ++i) {
        if (std::string(args[i]) == "--") {
            ctx.had_separator = true;
            ctx.trailing_args.assign(args.begin() + static_cast<long>(i) + 1, args.end());
            args.resize(i);
            break;
        }
    }

    CLI::App app{"Kiln: run CI jobs and untrusted code in throwaway QEMU microVMs."};
    app.set_version_flag("--version", std::string("kiln ") + KILN_VERSION);
    app.require_subcommand(1);
    app.footer("Exit status: a command's own status; 125 when kiln itself fails; 124 when a command times out.");
    add_vm_commands(app, ctx);
    add_doctor_command(app, ctx);
    add_sandbox_commands(app, ctx);
    add_template_commands(app, ctx);
    add_host_commands(app, ctx);
    add_whoami_command(app, ctx);
    add_ci_commands(app, ctx);
    add_gitlab_executor_command(app, ctx);

    try {
        app.parse(static_cast<int>(args.size()), args.data());
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return kExitKilnError;
    }
    return ctx.exit_code;
}
