// Vm: one running QEMU microVM with its run directory, QMP, serial console and agent connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/child_process.h"
#include "base/clock.h"
#include "base/result.h"
#include "vm/accel.h"
#include "vm/agent_client.h"
#include "vm/console_log.h"
#include "vm/disk_clone.h"
#include "vm/qemu_command.h"

namespace kiln::vm {

class QmpClient;
class VmMigration;
namespace jail {
class UidLease;
class VmCgroup;
}

// KILN_GUEST_ASLR=1: keep address-space randomisation in guests under TCG (off by default there,
// see Vm::boot; boot-time, so templates are baked with or without it: it is in their key).
bool guest_aslr_requested();

struct BootOptions {
    std::string image = "tiny";   // $KILN_CACHE/images/<image>/rootfs.ext4, unless rootfs_path is set
    std::string rootfs_path;      // an explicit ext4 image (cloned, never written)
    std::string kernel_path;      // empty: find_kernel()
    uint32_t vcpus = 1;
    uint32_t memory_mib = 256;
    AccelMode accel = AccelMode::Auto;
    Millis boot_timeout{60000};   // QEMU start to the agent's first answer
    std::string id;               // empty: 12 random hex digits
    std::string hostname;         // empty: kiln-<id>
    std::vector<std::string> extra_kernel_args;
    // Kiln's TCG boot savings (noapictimer except for snapshottable boots, noreplace-smp,
    // norandmaps; see Vm::boot). false: the kernel's defaults, the plain QEMU cold boot that
    // benchmarks compare against.
    bool tcg_boot_savings = true;
    std::optional<NetDevice> net;  // a virtio-net NIC on this tap fd; nothing: no NIC
    bool snapshottable = false;   // RAM in a shared file in the run dir, so take_snapshot() works
    bool keep_run_dir = false;    // leave $DATA/vms/<id> behind after destroy (debugging)
    // QEMU gets SIGKILL when the thread that booted it exits (PR_SET_PDEATHSIG): right for a CLI
    // whose main thread owns the VM (a killed `kiln vm run` leaves no QEMU behind), wrong for
    // worker threads that end before their VMs.
    bool die_with_owner_thread = false;
    std::function<void(std::string_view)> on_progress;  // one line per boot step, for humans
    const std::atomic<bool>* cancel = nullptr;  // set from another thread to abandon the boot ("cancelled")
};

// Milliseconds, each from the start of boot().
struct BootTimings {
    int64_t prepared_ms = 0;     // artifacts found, disk cloned
    int64_t spawned_ms = 0;      // QEMU's fork+exec returned
    int64_t qmp_ready_ms = 0;    // QMP negotiated, console and agent sockets connected
    int64_t agent_ready_ms = 0;  // the agent answered a ping
    int64_t ready_ms = 0;        // init done: exec works
    CloneMethod clone_method = CloneMethod::SparseCopy;
    Accel accel = Accel::Tcg;
    std::string accel_reason;
    // A snapshottable one-vCPU boot under TCG: the guest's tick device ("lapic", or "pit" where the
    // kernel's APIC timer check failed on every attempt) and the boots it took (Vm::boot).
    std::string tick_device;
    int boot_attempts = 1;
};

// What runs inside the VM, recorded for snapshots and for humans.
struct GuestInfo {
    std::string kernel_release;
    std::string image_name;
    std::string image_key;
    std::string snapshot_id;  // the snapshot this VM was restored from, if any
    std::string hostname;
};

enum class ShutdownMethod { Agent, QmpQuit, Kill };
const char* shutdown_method_name(ShutdownMethod method);

// Owner-thread API: boot, wait_exit, shutdown, destroy and the destructor belong to the thread that
// owns the Vm; agent() may be used from any number of threads while the Vm lives. If QEMU exits or
// the guest panics, every pending and later agent call fails promptly with Error{ErrorCode::VmGone} whose
// message says why (the panic line, or QEMU's exit status and the tail of qemu.log).
class Vm {
public:
    // 1. resolve the kernel, image and accelerator; 2. make the run dir and clone the image into
    // it; 3. start QEMU paused; 4. connect QMP, console and agent; 5. cont; 6. ping until the agent
    // answers (failing fast on QEMU exit or a panic); 7. init with fresh entropy, clock and identity.
    // A snapshottable one-vCPU boot under TCG is repeated until the guest ticks from its APIC
    // timer (at most 4 boots; BootTimings.tick_device says which it got).
    static Result<std::unique_ptr<Vm>> boot(const BootOptions& options);

    // Steps 3-4 only, for a VmConfig built elsewhere (restores): the caller drives QMP and the agent.
    // The run dir must exist; it is removed at destroy unless keep_run_dir.
    static Result<std::unique_ptr<Vm>> launch(const VmConfig& config, const std::string& id, bool keep_run_dir = false,
                                              bool die_with_owner_thread = false);

    ~Vm();  // destroy()
    Vm(const Vm&) = delete;
    Vm& operator=(const Vm&) = delete;

    AgentClient& agent() { return *m_agent; }
    pid_t pid() const { return m_qemu ? m_qemu->pid() : -1; }
    // The uid its QEMU runs as in its jail; 0 when it runs unconfined (allow_unconfined).
    uid_t jail_uid() const;
    const std::string& id() const { return m_id; }
    const std::string& run_dir() const { return m_paths.dir; }
    const RunPaths& paths() const { return m_paths; }
    const BootTimings& timings() const { return m_timings; }
    const VmConfig& config() const { return m_config; }
    const GuestInfo& guest() const { return m_guest; }
    void set_guest(GuestInfo guest) { m_guest = std::move(guest); }

    // Sends the agent fresh host entropy, the wall clock, the VM id and hostname. Exec and files
    // work only after this, after every boot, restore and fork.
    Status renew_identity();

    // QEMU has not exited and its QMP connection is open.
    bool qemu_alive();

    // Waits for QEMU to exit on its own.
    std::optional<ExitStatus> wait_exit(Millis timeout);
    // Agent shutdown (the guest syncs, remounts / read-only and reboots; -no-reboot ends QEMU),
    // else QMP quit, else SIGKILL. QEMU is gone when this returns.
    ShutdownMethod shutdown(Millis timeout);
    // SIGKILL QEMU, reap it, close every connection, remove the run dir. Idempotent.
    void destroy();
    // SIGKILL QEMU and wait until it has exited (milliseconds; at most 2 s if the host is stuck),
    // without reaping it; safe from any thread (e.g. a signal watcher thread, which may block that
    // long). Pending agent calls then fail with vm_gone; the owner still calls destroy().
    void kill();

    std::optional<PanicReport> panic() const;
    // Why the VM is gone (or going): used for every vm_gone error.
    Error gone_error();

private:
    static Result<std::unique_ptr<Vm>> boot_once(const BootOptions& options);
    // QMP is the VM layer's own: Vm drives the run state (boot's cont, shutdown's quit) and
    // VmMigration (vm_migration.h) everything snapshot, restore and fork do through it.
    friend class VmMigration;
    QmpClient& qmp() { return *m_qmp; }

    Vm(VmConfig config, std::string id, bool keep_run_dir);  // out of line: QmpClient is incomplete here
    // launch(): QEMU started with its output in qemu.log, then QMP, console and agent connected.
    Status spawn_qemu(const std::vector<std::string>& argv, bool die_with_owner_thread);
    Status connect_to_qemu();
    // boot() step 6: pings until the agent answers, failing fast on QEMU exit or a panic.
    Status wait_for_agent(Clock::time_point deadline, const std::atomic<bool>* cancel);
    std::optional<Error> qemu_exit_error();
    // Why QEMU died when its cgroup's OOM killer ended it; nothing otherwise.
    std::optional<std::string> memory_limit_reached() const;
    void on_guest_panic(const PanicReport& report);

    VmConfig m_config;
    std::string m_id;
    RunPaths m_paths;
    bool m_keep_run_dir;
    BootTimings m_timings;
    GuestInfo m_guest;
    bool m_destroyed = false;
    std::atomic<bool> m_stopping{false};  // shutdown/destroy in progress: a vm_gone is expected

    std::unique_ptr<jail::UidLease> m_uid_lease;  // the jail's uid, held until QEMU is reaped
    std::unique_ptr<jail::VmCgroup> m_cgroup;     // its QEMU's cgroup, removed once QEMU is reaped
    std::unique_ptr<ChildProcess> m_qemu;
    std::unique_ptr<QmpClient> m_qmp;
    std::unique_ptr<ConsoleLog> m_console;
    std::unique_ptr<AgentClient> m_agent;
    bool m_agent_needs_reset = true;  // until renew_identity() has reset the connection's first agent

    std::mutex m_callback_mutex;          // console panic callback vs. destroy
    AgentClient* m_panic_target = nullptr;  // guarded by m_callback_mutex
};

}  // namespace kiln::vm
