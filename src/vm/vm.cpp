// Vm: boot (artifacts, run dir, disk clone, QEMU, QMP, console, agent, init), shutdown and teardown.
#include "vm/vm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string_view>

#include "base/errno_error.h"
#include "base/file_util.h"
#include "base/random.h"
#include "vm/clone_launch.h"
#include "vm/guest_artifacts.h"
#include "vm/qemu_version.h"
#include "vm/jail/jail_settings.h"
#include "vm/jail/jail_spawn.h"
#include "vm/jail/cgroup.h"
#include "vm/jail/uid_lease.h"
#include "vm/jail/vm_cgroups.h"
#include "vm/qmp_client.h"
#include "vm/sealed_memory.h"
#include "vm/vm_jail.h"

namespace kiln::vm {
namespace {

int64_t since_ms(Clock::time_point start) {
    return std::chrono::duration_cast<Millis>(Clock::now() - start).count();
}

std::string indent_lines(const std::string& text) {
    std::string out;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        out += "\n  " + text.substr(pos, end - pos);
        pos = end + 1;
    }
    return out;
}

std::string joined_lines(const std::vector<std::string>& lines, size_t max) {
    std::string out;
    size_t start = lines.size() > max ? lines.size() - max : 0;
    for (size_t i = start; i < lines.size(); ++i) out += "\n  " + lines[i];
    return out;
}

}  // namespace

const char* shutdown_method_name(ShutdownMethod method) {
    switch (method) {
    case ShutdownMethod::Agent: return "agent";
    case ShutdownMethod::QmpQuit: return "qmp quit";
    case ShutdownMethod::Kill: return "SIGKILL";
    }
    return "?";
}

namespace {

// What boot() settles before it creates anything: QEMU's config (all but the run dir and the
// disk), the guest as snapshots record it, the image to clone and the accelerator with its reason.
struct BootPlan {
    VmConfig config;
    GuestInfo guest;
    std::string image_path;
    AccelChoice accel;
};

// The kernel and the root file system image: the cached ones, or the caller's, checked.
Status find_kernel_and_image(const BootOptions& options, BootPlan& plan) {
    if (options.kernel_path.empty()) {
        auto kernel = TRY(find_kernel());
        plan.config.kernel_path = kernel.path;
        plan.guest.kernel_release = kernel.release;
    } else {
        if (!path_exists(options.kernel_path))
            return make_error(ErrorCode::KernelMissing, "no guest kernel at " + options.kernel_path +
                                                            "; build it with `make images` (or scripts/build-kernel.sh)");
        TRY(check_kernel_file(options.kernel_path));
        plan.config.kernel_path = options.kernel_path;
    }
    if (options.rootfs_path.empty()) {
        auto image = TRY(find_image(options.image));
        plan.image_path = image.rootfs;
        plan.guest.image_name = image.name;
        if (auto m = read_file(image.manifest, 64 * 1024); m.ok()) {
            auto j = proto::json::parse(*m, nullptr, false);
            // A "key" that is not a string is a damaged manifest: no key, never an exception.
            if (auto key = j.is_object() ? j.find("key") : j.end(); key != j.end() && key->is_string())
                plan.guest.image_key = key->get<std::string>();
        }
    } else {
        if (!path_exists(options.rootfs_path))
            return make_error(ErrorCode::ImageMissing, "no root file system image at " + options.rootfs_path);
        TRY(check_ext4_image(options.rootfs_path));
        plan.image_path = options.rootfs_path;
    }
    return ok_status();
}

// The guest kernel's extra arguments: Kiln's boot-time savings, the caller's own arguments after
// them (so they can override them), then what the accelerator needs.
std::vector<std::string> boot_kernel_args(const BootOptions& options, Accel accel, uint32_t vcpus) {
    // Measured under TCG, see docs/benchmarks.md: no legacy BSD ptys (pty_init registered 256 of
    // them: ~80-100 ms of a ~1 s boot; /dev/pts is what everything uses) and one 8250 UART instead
    // of 4 (only ttyS0 exists).
    std::vector<std::string> args = {"pty.legacy_count=0", "8250.nr_uarts=1"};
    args.insert(args.end(), options.extra_kernel_args.begin(), options.extra_kernel_args.end());
    if (accel != Accel::Tcg) return args;
    // Under TCG the guest's TSC is the host's (QEMU offsets it while the VM is stopped): steady.
    // Without tsc=reliable the guest's clocksource watchdog checks it against jiffies, which fall
    // behind whenever the vCPU thread waits for a host core; on a loaded host (20 clones restored
    // at once on 2 cores: 13 of 20 did) it marks the TSC unstable, switches to refined-jiffies,
    // and the guest's clock then drifts seconds behind the host's, restored identity or not.
    args.push_back("tsc=reliable");
    // Two boot-time savings for the usual one-vCPU guest under TCG (measured, docs/benchmarks.md):
    // - noapictimer: the kernel otherwise calibrates the local APIC timer against the PIT for 25
    //   jiffies (100 ms of guest time, 100-250 ms of a boot here); ticks then come from the PIT,
    //   which microvm has under TCG. With more vCPUs the APIC timers are needed (broadcast): kept.
    // - noreplace-smp: a kernel that finds one CPU rewrites every lock prefix of its text to a
    //   no-op prefix (~150-250 ms: under TCG each store into translated code invalidates it). With
    //   one vCPU QEMU translates locked instructions as plain ones anyway, so nothing is lost.
    //   A snapshottable boot (a template, whose clones then idle for hours) keeps the APIC timer:
    //   the PIT's one-shot range is 27 ms, so an idle guest ticking from it wakes ~36 times a
    //   second, ~1.2% of a host core per idle clone under TCG (~12 ms of QEMU CPU per second),
    //   which made ~150 idle clones saturate 2 cores (density_bench); with the APIC timer an idle
    //   clone's QEMU uses ~0. Its calibration is paid once per bake (see Vm::boot).
    if (vcpus == 1 && options.tcg_boot_savings) {
        if (!options.snapshottable) args.push_back("noapictimer");
        args.push_back("noreplace-smp");
    }
    // - norandmaps (TCG only): QEMU reuses a translated block only at the same guest virtual
    //   address, so with ASLR every new process translates the dynamic loader, libc and its own
    //   code again. Measured in a `base` VM: `git --version` 60 -> 11-18 ms, `/bin/true` 40 -> 6 ms.
    //   The VM is the isolation boundary (one job, one VM); KILN_GUEST_ASLR=1 keeps ASLR. Under
    //   KVM nothing is translated, so ASLR stays on there. docs/benchmarks.md.
    if (options.tcg_boot_savings && !guest_aslr_requested()) args.push_back("norandmaps");
    return args;
}

// Step 1 of a boot: artifacts, accelerator, kernel command line and QEMU: everything that can be
// wrong before anything is created.
Result<BootPlan> plan_boot(const BootOptions& options) {
    BootPlan plan;
    VmConfig& config = plan.config;
    config.vcpus = options.vcpus;
    config.memory_mib = options.memory_mib;
    config.net = options.net;
    TRY(find_kernel_and_image(options, plan));
    plan.accel = TRY(choose_accel(options.accel));
    config.accel = plan.accel.accel;
    if (auto khz = host_tsc_khz(); khz.ok()) config.tsc_khz = *khz;
    config.extra_kernel_args = boot_kernel_args(options, config.accel, config.vcpus);
    auto qemu = TRY(qemu_info());
    config.qemu_binary = qemu.binary;
    config.sandbox = qemu.sandbox;
    config.start_paused = true;  // connect the console before the guest prints anything
    config.disk_cache = DiskCache::Unsafe;  // a per-VM clone deleted with the VM; see DiskCache
    return plan;
}

// Step 2 of a boot: the run dir $DATA/vms/<id> and the VM's own clone of the image in it. On
// failure nothing is left behind (unless keep_run_dir).
Result<CloneMethod> prepare_run_dir(const BootOptions& options, const std::string& id, BootPlan& plan) {
    VmConfig& config = plan.config;
    config.run_dir = TRY(new_run_dir(id));
    config.name = "kiln-" + id;
    RunPaths paths = RunPaths::in(config.run_dir);
    auto cloned = clone_file(plan.image_path, paths.disk);
    if (!cloned.ok()) {
        if (!options.keep_run_dir) (void)remove_tree(config.run_dir);
        return std::move(cloned).error();
    }
    config.rootfs_path = paths.disk;
    // Snapshottable RAM is a shared file: a snapshot then writes device state only (x-ignore-shared).
    if (options.snapshottable) config.memory_file = MemoryFile{paths.jail + "/memory", /*share=*/true};
    plan.guest.hostname = options.hostname.empty() ? "kiln-" + id : options.hostname;
    return *cloned;
}

// Whether a boot's guest must tick from the APIC timer (see boot_kernel_args).
bool wants_apic_timer(const BootOptions& options, const VmConfig& config) {
    return config.accel == Accel::Tcg && config.vcpus == 1 && options.snapshottable && options.tcg_boot_savings;
}

// The guest's tick device (clockevent0's current device: "lapic" or "pit").
Result<std::string> tick_device(Vm& vm) {
    proto::ExecRequest req;
    req.argv = {"/bin/cat", "/sys/devices/system/clockevents/clockevent0/current_device"};
    req.timeout_ms = 10000;
    auto out = TRY(vm.agent().exec_collect(req));
    std::string device = out.stdout_data;
    while (!device.empty() && (device.back() == '\n' || device.back() == ' ')) device.pop_back();
    if (out.result.exit_code != 0 || device.empty())
        return make_error(ErrorCode::BootFailed, "reading the guest's tick device: " + out.stderr_data.substr(0, 200));
    return device;
}

}  // namespace

// Under TCG the kernel verifies the APIC timer it calibrated by counting PIT ticks (jiffies) over
// 25 APIC periods; a vCPU thread that waits for a host core loses PIT ticks, the check fails
// ("APIC timer disabled due to verification failure") and the guest ticks from the PIT. Measured
// here at load ~2: about half the boots. A template is booted once and restored many times, so
// its boot is repeated until the check passes, kTickAttempts at most; then the PIT it is: the
// guest works, at the idle cost above. The device is in BootTimings.
Result<std::unique_ptr<Vm>> Vm::boot(const BootOptions& options) {
    constexpr int kTickAttempts = 4;
    for (int attempt = 1;; ++attempt) {
        auto vm = TRY(boot_once(options));
        if (!wants_apic_timer(options, vm->config())) return vm;
        auto device = tick_device(*vm);
        if (!device.ok()) return std::move(device).error();
        vm->m_timings.tick_device = *device;
        vm->m_timings.boot_attempts = attempt;
        if (*device != "pit" || attempt == kTickAttempts || (options.cancel && *options.cancel)) return vm;
        if (options.on_progress)
            options.on_progress("timer: the guest's APIC timer check failed (a loaded host); booting again (" +
                                std::to_string(attempt + 1) + " of " + std::to_string(kTickAttempts) + ")");
        vm->destroy();
    }
}

Result<std::unique_ptr<Vm>> Vm::boot_once(const BootOptions& options) {
    auto start = Clock::now();
    auto progress = [&](const std::string& line) {
        if (options.on_progress) options.on_progress(line);
    };

    // 1. Artifacts and accelerator.
    BootPlan plan = TRY(plan_boot(options));
    progress(std::string("accelerator: ") + accel_name(plan.accel.accel) + " (" + plan.accel.reason + ")");
    if (options.cancel && *options.cancel) return make_error(ErrorCode::Cancelled, "the boot was cancelled");

    // 2. Run dir and disk.
    std::string id = options.id.empty() ? TRY(random_hex(6)) : options.id;
    CloneMethod cloned = TRY(prepare_run_dir(options, id, plan));
    int64_t prepared_ms = since_ms(start);
    progress("disk: " + std::string(clone_method_name(cloned)) + " of " + plan.image_path + " (" +
             std::to_string(prepared_ms) + " ms)");

    // 3-4. QEMU, QMP, console, agent. From here on the Vm owns the run dir.
    auto vm = TRY(launch(plan.config, id, options.keep_run_dir, options.die_with_owner_thread));
    vm->set_guest(plan.guest);
    vm->m_timings.prepared_ms = prepared_ms;
    vm->m_timings.spawned_ms += prepared_ms;
    vm->m_timings.qmp_ready_ms += prepared_ms;
    vm->m_timings.clone_method = cloned;
    vm->m_timings.accel = plan.accel.accel;
    vm->m_timings.accel_reason = plan.accel.reason;
    progress("qemu: pid " + std::to_string(vm->pid()) + ", QMP ready at " + std::to_string(vm->m_timings.qmp_ready_ms) +
             " ms");

    // 5. Run the guest.
    auto deadline = Clock::now() + options.boot_timeout;
    if (auto r = vm->m_qmp->cont(); !r.ok())
        return make_error(ErrorCode::BootFailed, "QMP cont: " + vm->gone_error().message);

    // 6. The agent answers once the guest is up.
    TRY(vm->wait_for_agent(deadline, options.cancel));
    vm->m_timings.agent_ready_ms = since_ms(start);
    progress("agent: ready at " + std::to_string(vm->m_timings.agent_ready_ms) + " ms");

    // 7. Identity, entropy and clock before the first exec.
    TRY(vm->renew_identity());
    vm->m_timings.ready_ms = since_ms(start);
    return vm;
}

Vm::Vm(VmConfig config, std::string id, bool keep_run_dir)
    : m_config(std::move(config)), m_id(std::move(id)), m_paths(RunPaths::in(m_config.run_dir)),
      m_keep_run_dir(keep_run_dir) {}

Result<std::unique_ptr<Vm>> Vm::launch(const VmConfig& config, const std::string& id, bool keep_run_dir,
                                       bool die_with_owner_thread) {
    auto start = Clock::now();
    auto argv = build_qemu_argv(config);
    if (!argv.ok()) {
        if (!keep_run_dir) (void)remove_tree(config.run_dir);
        return std::move(argv).error();
    }
    std::unique_ptr<Vm> vm(new Vm(config, id, keep_run_dir));  // removes the run dir on failure from here
    TRY(vm->spawn_qemu(*argv, die_with_owner_thread));
    vm->m_timings.spawned_ms = since_ms(start);
    TRY(vm->connect_to_qemu());
    vm->m_timings.qmp_ready_ms = since_ms(start);
    vm->m_timings.accel = config.accel;
    return vm;
}

Status Vm::spawn_qemu(const std::vector<std::string>& argv, bool die_with_owner_thread) {
    TRY(jail::check_confinement());
    UniqueFd log(::open(m_paths.qemu_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!log) return errno_error("create " + m_paths.qemu_log);
    if (jail::confinement().jailed) {
        jail::JailSettings settings = jail::jail_settings();
        m_uid_lease = TRY(jail::UidLease::take(settings.uids, settings.lock_dir));
        auto spec = TRY(jail_spec_for(m_config, m_paths, *m_uid_lease, argv, log.get(), die_with_owner_thread));
        // Its cgroup; without one only when the host has none and allow_unconfined said to go on.
        if (auto host = jail::cgroup_host(); host.ok()) {
            auto limits = jail::vm_cgroup_limits(m_config.memory_mib, m_config.vcpus,
                                                 m_config.accel == Accel::Tcg ? m_config.tcg_tb_mib : 0);
            m_cgroup = TRY(jail::VmCgroup::create(**host, jail::cgroup_prefix() + m_id, limits));
            spec.cgroup_procs_fds = m_cgroup->procs_fds();
        }
        m_qemu = TRY(jail::spawn_jailed(spec));
        return ok_status();
    }
    // Unconfined (allow_unconfined, reported by every health check): QEMU as kilnd's own user.
    SpawnOptions spawn;
    spawn.argv = argv;
    spawn.cwd = m_config.run_dir;
    spawn.stdout_fd = log.get();
    spawn.stderr_fd = log.get();
    spawn.new_session = true;  // a terminal's Ctrl-C reaches kiln, which stops QEMU in order
    // PR_SET_PDEATHSIG only on request: it fires when the spawning *thread* exits, and restores run
    // on worker threads that end long before their VMs. Owners destroy their VMs; kilnd reconciles
    // orphans; the CLI asks for it so a killed `kiln vm run` leaves no QEMU behind.
    spawn.die_with_parent = die_with_owner_thread;
    if (m_config.net) spawn.keep_fds.push_back(m_config.net->tap_fd);
    if (m_config.memory_file && m_config.memory_file->sealed) spawn.keep_fds.push_back(m_config.memory_file->sealed->fd());
    m_qemu = TRY(ChildProcess::spawn(spawn));
    return ok_status();
}

Status Vm::connect_to_qemu() {
    auto exited = [this]() { return qemu_exit_error(); };
    auto qmp = QmpClient::connect(m_paths.qmp_socket, Millis(15000), exited);
    if (!qmp.ok()) {
        if (auto e = qemu_exit_error()) return *e;
        return std::move(qmp).error();
    }
    m_qmp = std::move(*qmp);
    // Chardevs exist before the monitor serves, so these connect at once.
    m_console = TRY(ConsoleLog::start(
        m_paths.console_socket, m_paths.console_log, Millis(5000),
        [this](const PanicReport& report) { on_guest_panic(report); }, exited));
    m_agent = TRY(AgentClient::connect(m_paths.agent_socket, Millis(5000), exited));
    m_agent->set_gone_reason([this] { return gone_error(); });
    {
        std::lock_guard lock(m_callback_mutex);
        m_panic_target = m_agent.get();
    }
    if (auto p = m_console->panic()) on_guest_panic(*p);  // a panic before the agent existed
    return ok_status();
}

Status Vm::wait_for_agent(Clock::time_point deadline, const std::atomic<bool>* cancel) {
    // Frames sent before the guest opens its port wait in the socket, so one ping would do; a
    // fresh one every second also covers an agent that drops what came before it started.
    for (;;) {
        if (cancel && *cancel) return make_error(ErrorCode::Cancelled, "the boot was cancelled");
        int left = remaining_ms(deadline);
        if (left == 0) {
            std::string msg = "the guest agent did not answer within the boot timeout";
            if (m_console) msg += "; last console lines:" + joined_lines(m_console->last_lines(), 15);
            return make_error(ErrorCode::BootTimeout, msg);
        }
        auto ping = m_agent->ping(Millis(std::min(left, cancel ? 250 : 1000)));
        if (ping.ok()) return ok_status();
        if (ping.error().code == ErrorCode::Timeout) continue;
        Error e = ping.error();
        if (e.code == ErrorCode::VmGone) return make_error(ErrorCode::BootFailed, "the VM died during boot: " + e.message);
        return make_error(ErrorCode::BootFailed, "agent ping: " + e.to_string());
    }
}

bool guest_aslr_requested() {
    const char* v = std::getenv("KILN_GUEST_ASLR");
    return v && std::string_view(v) == "1";
}

Status Vm::renew_identity() {
    // The clock the agent sets is the host's at send time. Right after a restore the guest can
    // take long to take the request (its pages fault in; on a loaded host its vCPU waits), so a
    // slow round trip is repeated: the second one finds the guest running and lands within ms.
    constexpr Millis kClockSlack{50};
    constexpr int kMaxAttempts = 4;
    // A guest restored or forked from memory may hold the streams of the host it was saved
    // under: the first init on a connection is preceded by a reset (no round trip: its answer
    // is dropped), so the new host's stream ids are free and that host's execs are gone.
    if (std::exchange(m_agent_needs_reset, false)) {
        Status reset = m_agent->send_reset();
        if (!reset.ok()) return make_error(ErrorCode::BootFailed, "agent reset: " + reset.error().message);
    }
    for (int attempt = 1;; ++attempt) {
        proto::InitRequest init;
        init.sandbox_id = m_id;
        init.hostname = m_guest.hostname.empty() ? "kiln-" + m_id : m_guest.hostname;
        init.time_unix_ns = wall_clock_ns();
        init.entropy_hex = TRY(random_hex(proto::kEntropyBytes));
        // Kiln's VMs have no network device, or one whose peer (the tap in the sandbox's own
        // namespace) has the same fixed MAC and address in every sandbox (src/daemon/net), so
        // no ARP entry goes stale across a restore or fork. Flushing anyway made the agent open
        // and parse /proc/net/arp: after a restore, under TCG, ~1,700 freshly translated blocks,
        // about a third of the identity renewal (~20 ms).
        init.flush_arp = false;
        auto sent = Clock::now();
        Status st = m_agent->init(init);
        if (!st.ok())
            return make_error(st.error().code == ErrorCode::VmGone ? ErrorCode::BootFailed : st.error().code,
                              "agent init: " + st.error().message);
        if (Clock::now() - sent <= kClockSlack || attempt == kMaxAttempts) return ok_status();
    }
}

std::optional<Error> Vm::qemu_exit_error() {
    if (!m_qemu) return std::nullopt;
    auto status = m_qemu->wait_for(Millis(0));
    if (!status) return std::nullopt;
    std::string msg = "QEMU " + status->describe();
    if (auto oom = memory_limit_reached()) msg = *oom + " (" + msg + ")";
    auto tail = read_file_tail(m_paths.qemu_log, 4096);
    if (tail.ok() && !last_lines(*tail, 10).empty()) msg += "; qemu.log:" + indent_lines(last_lines(*tail, 10));
    return make_error(ErrorCode::QemuFailed, msg);
}

void Vm::on_guest_panic(const PanicReport& report) {
    std::lock_guard lock(m_callback_mutex);
    if (m_panic_target) m_panic_target->fail_all(make_error(ErrorCode::VmGone, "the guest kernel panicked: " + report.to_string()));
}

std::optional<PanicReport> Vm::panic() const {
    if (!m_console) return std::nullopt;
    return m_console->panic();
}

Error Vm::gone_error() {
    if (m_stopping) return make_error(ErrorCode::VmGone, "the VM was stopped");
    // Give QEMU and the console a moment to finish: the reason shows up just after the socket closes.
    auto status = m_qemu ? m_qemu->wait_for(Millis(2000)) : std::nullopt;
    if (m_console) m_console->wait_closed(status ? Millis(1000) : Millis(0));
    if (auto p = panic()) return make_error(ErrorCode::VmGone, "the guest kernel panicked: " + p->to_string());
    if (status) {
        std::string msg;
        if (status->success()) msg = "the guest rebooted or powered off (QEMU exited with status 0)";
        else msg = "QEMU " + status->describe();
        if (auto oom = memory_limit_reached()) msg = *oom + " (" + msg + ")";
        auto tail = read_file_tail(m_paths.qemu_log, 4096);
        if (tail.ok() && !last_lines(*tail, 10).empty()) msg += "; qemu.log:" + indent_lines(last_lines(*tail, 10));
        if (m_console) {
            auto lines = m_console->last_lines();
            if (!lines.empty()) msg += "; last console lines:" + joined_lines(lines, 10);
        }
        return make_error(ErrorCode::VmGone, msg);
    }
    return make_error(ErrorCode::VmGone, "the agent connection closed while QEMU (pid " + std::to_string(pid()) +
                                     ") is still running");
}

std::optional<std::string> Vm::memory_limit_reached() const {
    if (!m_cgroup) return std::nullopt;
    auto killed = m_cgroup->oom_killed();
    if (!killed.ok() || !*killed) return std::nullopt;
    return "the VM reached its memory limit and the kernel's OOM killer ended its QEMU (cgroup limits: " +
           m_cgroup->describe_limits() + ")";
}

bool Vm::qemu_alive() {
    return m_qmp && m_qmp->connected() && m_qemu && !m_qemu->wait_for(Millis(0));
}

std::optional<ExitStatus> Vm::wait_exit(Millis timeout) {
    if (!m_qemu) return std::nullopt;
    return m_qemu->wait_for(timeout);
}

ShutdownMethod Vm::shutdown(Millis timeout) {
    if (!m_qemu || m_qemu->exit_status()) return ShutdownMethod::Agent;
    m_stopping = true;
    auto deadline = Clock::now() + timeout;
    // The guest may reboot before its reply leaves: only QEMU's exit tells.
    if (m_agent) (void)m_agent->shutdown(Millis(std::max(1, remaining_ms(deadline) * 2 / 3)));
    if (m_qemu->wait_for(Millis(remaining_ms(deadline) * 2 / 3))) return ShutdownMethod::Agent;
    if (m_qmp) (void)m_qmp->quit(Millis(std::max(1, remaining_ms(deadline))));
    if (m_qemu->wait_for(Millis(remaining_ms(deadline)))) return ShutdownMethod::QmpQuit;
    m_qemu->kill_and_reap();
    return ShutdownMethod::Kill;
}

void Vm::destroy() {
    if (m_destroyed) return;
    m_destroyed = true;
    m_stopping = true;
    {
        std::lock_guard lock(m_callback_mutex);
        m_panic_target = nullptr;
    }
    if (m_qemu) m_qemu->kill_and_reap();
    // Order: the agent's reader may be asking gone_error(), which reads the console and QEMU.
    m_agent.reset();
    m_console.reset();
    m_qmp.reset();
    m_qemu.reset();
    m_cgroup.reset();  // QEMU is reaped: its cgroup is empty (remove() kills anything left first)
    m_uid_lease.reset();
    if (!m_keep_run_dir) (void)remove_tree(m_paths.dir);
}

void Vm::kill() {
    m_stopping = true;
    if (!m_qemu) return;
    (void)m_qemu->kill(SIGKILL);
    // The signal is delivered at once, but QEMU takes a moment to exit (its threads, unmapping the
    // guest's RAM), longer on a loaded host. Waiting here means a sandbox whose delete returned has
    // no QEMU left running, even while a lease still holds the Vm. The pidfd turns readable when the
    // process has exited and stays so after whoever waits on it (destroy(), the exit watch) reaps
    // it: it stays open until the ChildProcess goes, so this poll never races a reaper.
    pollfd exited{m_qemu->pidfd(), POLLIN, 0};
    (void)::poll(&exited, 1, 2000);
}

Vm::~Vm() { destroy(); }

uid_t Vm::jail_uid() const { return m_uid_lease ? m_uid_lease->uid() : 0; }

}  // namespace kiln::vm
