// VmMigration: QMP migration to and from fds handed to QEMU, and the stop and cont around it.
#include "vm/vm_migration.h"

#include <fcntl.h>
#include <unistd.h>

#include <thread>

#include "base/errno_error.h"
#include "base/unique_fd.h"
#include "vm/qmp_client.h"
#include "vm/vm.h"

namespace kiln::vm {
namespace {

constexpr const char* kMigrateFdName = "kiln-migrate";
const std::string kMigrateUri = std::string("fd:") + kMigrateFdName;

// QEMU throttles a migration to 128 MiB/s and iterates until the rest fits its 300 ms downtime
// limit, even for a stopped VM, which then waits for every byte: a 24 MB fork stream took ~140 ms
// instead of ~50. Our VMs are stopped when we migrate them, so neither limit buys anything.
const MigrationParameters kUnthrottled{int64_t(1) << 40, 100000, std::nullopt};

// A live source (a fork's parent), copied in exactly one pass while the guest runs: the dirty
// bitmap is synced only at the start, with the guest stopped, and at the end, when QEMU has stopped
// it for the pages dirtied meanwhile. A downtime limit of 0 makes QEMU's threshold 0, so it never
// syncs in between (it syncs only when what is left is under the threshold) and finishes once the
// pass is done. Why no sync while the guest runs: QEMU 7.2's TCG then loses writes. Its sync clears
// the migration bits without resetting the vCPU's TLB entries that let writes through untracked
// (later QEMUs reset them), and the TLB flush that dirty tracking starts with is queued to the vCPU,
// so a guest running while the first sync happens writes past it too. Measured: with a 5 ms
// downtime limit (QEMU syncing mid-copy), a busy parent's child oopsed in jbd2 or hung in 2 of 4
// runs of the busy-fork test. A guest that dirties much of its RAM during the pass makes the last
// pass (the pause) longer, never endless.
const MigrationParameters kLive{int64_t(1) << 40, 0, std::nullopt};

// A timestamped QMP event's time in ms ({"seconds", "microseconds"}, QEMU's wall clock).
std::optional<double> event_ms(const json& event) {
    auto ts = event.find("timestamp");
    if (ts == event.end() || !ts->is_object()) return std::nullopt;
    auto s = ts->find("seconds"), us = ts->find("microseconds");
    if (s == ts->end() || us == ts->end() || !s->is_number_integer() || !us->is_number_integer()) return std::nullopt;
    return double(s->get<int64_t>()) * 1000.0 + double(us->get<int64_t>()) / 1000.0;
}

// After loading a VM with a NIC, QEMU announces it: RARPs from the host side and, the guest's
// virtio-net driver agreeing (GUEST_ANNOUNCE), a config interrupt that makes the guest send
// gratuitous ARPs, in rounds from the moment it runs. A Kiln NIC's only neighbour is the tap in its
// own namespace, which never moves, so nobody needs them, and under TCG the guest's side of the
// first round ran beside the identity renewal of every create with a NIC.
const MigrationParameters kNoAnnouncements{std::nullopt, std::nullopt, 0};

}  // namespace

VmMigration::VmMigration(Vm& vm) : m_vm(vm), m_qmp(vm.qmp()) {}

Status VmMigration::prepare_outgoing(bool ignore_shared) {
    TRY(m_qmp.migrate_set_parameters(kUnthrottled));
    TRY(m_qmp.migrate_set_capabilities(MigrationCapabilities{ignore_shared, /*events=*/true}));
    drop_old_events();
    return ok_status();
}

Status VmMigration::prepare_live_outgoing() {
    TRY(m_qmp.migrate_set_parameters(kLive));
    TRY(m_qmp.migrate_set_capabilities(MigrationCapabilities{/*ignore_shared=*/false, /*events=*/true}));
    drop_old_events();
    return ok_status();
}

void VmMigration::drop_old_events() {
    for (const char* name : {"MIGRATION", "STOP", "RESUME"})
        while (m_qmp.wait_event(name, Millis(0)).ok()) {
        }
}

Status VmMigration::stop() { return m_qmp.stop(); }

Status VmMigration::start_outgoing(int fd) {
    TRY(m_qmp.getfd(kMigrateFdName, fd));
    return m_qmp.migrate(kMigrateUri);
}

Result<std::string> VmMigration::wait_migration_end(Clock::time_point deadline, bool or_active) {
    for (;;) {
        auto ev = m_qmp.wait_event("MIGRATION", Millis(std::max(1, remaining_ms(deadline))));
        if (!ev.ok()) return std::move(ev).error();
        std::string status = qmp_string(ev->value("data", json::object()), "status");  // "data" is an object or absent
        if (status == "completed" || status == "failed" || status == "cancelled" || (or_active && status == "active"))
            return status;
    }
}

Status VmMigration::finish_outgoing(Clock::time_point deadline) {
    auto status = wait_migration_end(deadline);
    if (!status.ok()) {
        if (status.error().code == ErrorCode::Timeout) {
            (void)m_qmp.migrate_cancel();
            return make_error(ErrorCode::Timeout, "writing the VM state took too long");
        }
        return std::move(status).error();
    }
    return status_error(*status);
}

Status VmMigration::wait_until_active(Clock::time_point deadline) {
    std::string status = TRY(wait_migration_end(deadline, /*or_active=*/true));
    return status == "active" ? ok_status() : status_error(status);
}

Status VmMigration::status_error(const std::string& status) {
    if (status == "completed") return ok_status();
    auto info = m_qmp.query_migrate();
    std::string why = !info.ok() ? info.error().message : info->error_desc.empty() ? "no reason given" : info->error_desc;
    return make_error(ErrorCode::SnapshotFailed, "QEMU migration " + status + ": " + why);
}

Status VmMigration::write_to_file(const std::string& path, bool ignore_shared, Millis timeout) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) return errno_error("create " + path);
    TRY(prepare_outgoing(ignore_shared));
    TRY(start_outgoing(fd.get()));  // QEMU holds its own copy of fd
    return finish_outgoing(deadline_after(timeout));
}

Status VmMigration::resume() {
    auto deadline = Clock::now() + Millis(5000);
    for (;;) {
        auto r = m_qmp.cont();
        if (r.ok()) return ok_status();
        if (r.error().code != ErrorCode::QmpError || r.error().message.find("not finalized") == std::string::npos ||
            Clock::now() >= deadline)
            return std::move(r).error();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

std::optional<double> VmMigration::paused_ms() {
    std::optional<double> total;
    for (;;) {
        auto stop = m_qmp.wait_event("STOP", Millis(0));
        if (!stop.ok()) return total;
        auto resume = m_qmp.wait_event("RESUME", Millis(100));  // sent before cont's reply; the reader may lag
        if (!resume.ok()) return std::nullopt;
        auto from = event_ms(*stop), to = event_ms(*resume);
        if (!from || !to || *to < *from) return std::nullopt;
        total = total.value_or(0) + (*to - *from);
    }
}

Status VmMigration::prepare_incoming(int fd, bool ignore_shared) {
    TRY(m_qmp.migrate_set_capabilities(MigrationCapabilities{ignore_shared, /*events=*/true}));
    if (m_vm.config().net) TRY(m_qmp.migrate_set_parameters(kNoAnnouncements));
    return m_qmp.getfd(kMigrateFdName, fd);
}

Status VmMigration::start_incoming() { return m_qmp.migrate_incoming(kMigrateUri); }

Status VmMigration::finish_incoming(Clock::time_point deadline) {
    auto status = wait_migration_end(deadline);
    if (!status.ok()) {
        if (status.error().code == ErrorCode::Timeout) {
            auto mig = m_qmp.query_migrate();
            return make_error(ErrorCode::Timeout, "loading the device state timed out (migration " +
                                                      (mig.ok() ? mig->reply : mig.error().message) + ")");
        }
        return make_error(ErrorCode::RestoreFailed, "loading the device state failed: " + m_vm.gone_error().message);
    }
    if (*status != "completed")
        return make_error(ErrorCode::RestoreFailed,
                          "loading the device state ended '" + *status + "': " + m_vm.gone_error().message);
    // The source was stopped when its state was written, and QEMU carries that run state over: the
    // loaded VM waits for a cont (a no-op if it runs already).
    if (auto cont = m_qmp.cont(); !cont.ok())
        return make_error(ErrorCode::RestoreFailed, "cont after loading: " + cont.error().message);
    return ok_status();
}

Status VmMigration::load(Clock::time_point deadline) {
    if (auto st = start_incoming(); !st.ok())
        return make_error(ErrorCode::RestoreFailed, "migrate-incoming: " + st.error().message);
    return finish_incoming(deadline);
}

Status VmMigration::load_from_file(const std::string& path, bool ignore_shared, Millis timeout) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno_error("open " + path);
    TRY(prepare_incoming(fd.get(), ignore_shared));
    return load(deadline_after(timeout));
}

}  // namespace kiln::vm
