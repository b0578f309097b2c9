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
    // MIGRATION events left over from an earlier migration of this QEMU would end the wait early.
    while (m_qmp.wait_event("MIGRATION", Millis(0)).ok()) {
    }
    return ok_status();
}

Status VmMigration::stop() { return m_qmp.stop(); }

Status VmMigration::start_outgoing(int fd) {
    TRY(m_qmp.getfd(kMigrateFdName, fd));
    return m_qmp.migrate(kMigrateUri);
}

Result<std::string> VmMigration::wait_migration_end(Clock::time_point deadline) {
    for (;;) {
        auto ev = m_qmp.wait_event("MIGRATION", Millis(std::max(1, remaining_ms(deadline))));
        if (!ev.ok()) return std::move(ev).error();
        std::string status = qmp_string(ev->value("data", json::object()), "status");  // "data" is an object or absent
        if (status == "completed" || status == "failed" || status == "cancelled") return status;
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
    if (*status == "completed") return ok_status();
    auto info = m_qmp.query_migrate();
    std::string why = !info.ok() ? info.error().message : info->error_desc.empty() ? "no reason given" : info->error_desc;
    return make_error(ErrorCode::SnapshotFailed, "QEMU migration " + *status + ": " + why);
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
