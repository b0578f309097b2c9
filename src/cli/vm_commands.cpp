// `kiln vm ...`: local VM commands. `kiln vm run` boots a VM, runs one command in it and throws it away.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli_context.h"
#include "cli/output.h"
#include "cli/signal_watcher.h"
#include "vm/vm.h"

namespace kiln::cli {
namespace {

struct VmRunOptions {
    std::string image = "tiny";
    std::string kernel;
    std::string rootfs;
    uint32_t vcpus = 1;
    uint32_t memory_mib = 256;
    std::string accel = "auto";
    double timeout_s = 0;
    double boot_timeout_s = 60;
    bool force_stdin = false;
    bool no_stdin = false;
    bool verbose = false;
    bool keep = false;
    std::vector<std::string> env;
    std::string workdir = "/";
    std::vector<std::string> command;  // without "--"
};

int vm_run(const VmRunOptions& o) {
    Progress progress(o.verbose);
    if (o.command.empty()) {
        print_error("vm run: no command given (usage: kiln vm run [OPTIONS] -- COMMAND [ARG...])");
        return kExitKilnError;
    }
    auto accel = vm::parse_accel_mode(o.accel);
    if (!accel.ok()) {
        print_error(accel.error());
        return kExitKilnError;
    }
    if (o.timeout_s < 0 || o.boot_timeout_s <= 0 || !std::isfinite(o.timeout_s) || !std::isfinite(o.boot_timeout_s)) {
        print_error("vm run: timeouts must be positive numbers of seconds");
        return kExitKilnError;
    }
    proto::ExecRequest request;
    request.argv = o.command;
    request.cwd = o.workdir;
    request.timeout_ms = static_cast<uint64_t>(o.timeout_s * 1000);
    for (const auto& kv : o.env) {
        size_t eq = kv.find('=');
        if (eq == std::string::npos || eq == 0) {
            print_error("vm run: --env takes NAME=VALUE, not '" + kv + "'");
            return kExitKilnError;
        }
        request.env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }

    // Signals: during boot they cancel it; while the command runs the first one is forwarded to
    // it, a second one kills the VM.
    SignalWatcher signals;
    std::atomic<bool> cancel{false};
    std::atomic<int> signals_seen{0};
    std::atomic<int> last_signal{0};
    std::atomic<uint32_t> exec_stream{0};
    std::atomic<vm::Vm*> running{nullptr};
    signals.set_handler([&](int sig) {
        int seen = ++signals_seen;
        last_signal = sig;
        cancel = true;
        vm::Vm* v = running.load();
        if (!v) return;
        uint32_t stream = exec_stream.load();
        if (seen == 1 && stream != 0) (void)v->agent().send_signal(stream, sig);
        else v->kill();
    });

    vm::BootOptions boot;
    boot.image = o.image;
    boot.kernel_path = o.kernel;
    boot.rootfs_path = o.rootfs;
    boot.vcpus = o.vcpus;
    boot.memory_mib = o.memory_mib;
    boot.accel = *accel;
    boot.boot_timeout = Millis(static_cast<int64_t>(o.boot_timeout_s * 1000));
    boot.keep_run_dir = o.keep;
    boot.die_with_owner_thread = true;  // a SIGKILLed kiln takes its QEMU with it
    boot.cancel = &cancel;
    boot.on_progress = [&](std::string_view line) { progress.line(line); };
    progress.line("booting image " + (o.rootfs.empty() ? o.image : o.rootfs));
    auto booted = vm::Vm::boot(boot);
    if (!booted.ok()) {
        print_error(booted.error());
        return booted.error().code == ErrorCode::Cancelled ? 128 + last_signal.load() : kExitKilnError;
    }
    std::unique_ptr<vm::Vm> machine = std::move(*booted);
    progress.line("VM " + machine->id() + " ready in " + std::to_string(machine->timings().ready_ms) + " ms (" +
                  vm::accel_name(machine->timings().accel) + ")");
    if (o.keep) progress.line("run dir: " + machine->run_dir() + " (kept)");
    running = machine.get();
    if (cancel) machine->kill();

    bool stdout_open = true, stderr_open = true;
    vm::ExecIo io;
    io.on_stdout = [&](std::string_view d) {
        if (stdout_open && !write_all(1, d)) {
            stdout_open = false;  // like a shell pipeline: the command gets SIGPIPE
            (void)machine->agent().send_signal(exec_stream.load(), SIGPIPE);
        }
    };
    io.on_stderr = [&](std::string_view d) {
        if (stderr_open) stderr_open = write_all(2, d);
    };
    io.on_started = [&](uint32_t stream, int) { exec_stream = stream; };
    bool forward_stdin = o.force_stdin || (!o.no_stdin && !::isatty(0));
    if (forward_stdin) io.stdin_fd = 0;

    auto result = machine->agent().exec(request, io);
    running = nullptr;
    signals.set_handler({});
    machine->destroy();
    if (!result.ok()) {
        if (signals_seen > 0 && result.error().code == ErrorCode::VmGone) {
            print_error("interrupted by signal " + std::to_string(last_signal.load()) + "; the VM was destroyed");
            return 128 + last_signal.load();
        }
        print_error(result.error());
        return kExitKilnError;
    }
    if (result->timed_out) {
        char secs[32];
        std::snprintf(secs, sizeof secs, "%g", o.timeout_s);
        print_error(std::string("the command timed out after ") + secs + " s and was killed");
        return kExitTimeout;
    }
    if (result->output_truncated) print_error("the command's output passed the output limit and was cut");
    return result->shell_status();
}

}  // namespace

void add_vm_commands(CLI::App& app, CliContext& ctx) {
    auto* vm_group = app.add_subcommand("vm", "Local VMs, without kilnd");
    vm_group->require_subcommand(1);

    auto opts = std::make_shared<VmRunOptions>();
    auto* run = vm_group->add_subcommand("run", "Boot a fresh VM, run one command in it, throw the VM away");
    run->add_option("--image", opts->image, "Image name under $KILN_CACHE/images")->capture_default_str();
    run->add_option("--kernel", opts->kernel, "Guest kernel (default: $KILN_KERNEL or $KILN_CACHE/kernel/vmlinux)");
    run->add_option("--rootfs", opts->rootfs, "An ext4 image file to boot instead of --image (it is cloned, not changed)");
    run->add_option("--vcpus", opts->vcpus, "Virtual CPUs")->capture_default_str()->check(CLI::Range(1, 64));
    run->add_option("--memory-mib", opts->memory_mib, "Guest memory in MiB")->capture_default_str()->check(
        CLI::Range(64, 256 * 1024));
    run->add_option("--accel", opts->accel, "auto, kvm or tcg")->capture_default_str();
    run->add_option("--timeout", opts->timeout_s, "Kill the command (its whole process tree) after SECONDS; 0: never")
        ->capture_default_str();
    run->add_option("--boot-timeout", opts->boot_timeout_s, "Give up if the guest is not ready after SECONDS")
        ->capture_default_str();
    run->add_option("-e,--env", opts->env, "NAME=VALUE for the command's environment (repeatable)");
    run->add_option("-w,--workdir", opts->workdir, "Working directory in the guest")->capture_default_str();
    run->add_flag("--stdin", opts->force_stdin, "Forward stdin even when it is a terminal");
    run->add_flag("--no-stdin", opts->no_stdin, "Do not forward stdin (the default when stdin is a terminal)");
    run->add_flag("-v,--verbose", opts->verbose, "Show boot progress (shown anyway when stderr is a terminal)");
    run->add_flag("--keep", opts->keep, "Keep the VM's run dir (console.log, qemu.log) after it ends");
    run->prefix_command();  // `kiln vm run sh -c 'exit 3'` works without "--" too
    run->footer(
        "The command is an argv, run without a shell: `kiln vm run -- sh -c 'echo $HOME | wc -c'` for shell syntax.\n"
        "Its stdout and stderr stream to ours; stdin is forwarded when it is not a terminal.\n"
        "Signals: the first SIGINT/SIGTERM/SIGHUP goes to the command, a second one destroys the VM (status 128+N).\n"
        "Exit status: the command's (128+N when killed by signal N); 124 on --timeout; 125 when kiln fails.\n");
    run->callback([opts, run, &ctx] {
        opts->command = ctx.had_separator ? ctx.trailing_args : run->remaining();
        if (ctx.had_separator && !run->remaining().empty()) {
            print_error("vm run: unexpected arguments before '--'");
            ctx.exit_code = kExitKilnError;
            return;
        }
        ctx.exit_code = vm_run(*opts);
    });
}

}  // namespace kiln::cli
