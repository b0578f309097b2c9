// VmMigration: one VM's side of QEMU's migration, the mechanism under snapshot, restore and fork.
// VM layer only: it is how the layer's snapshot code reaches a Vm's QMP.
#pragma once

#include <optional>
#include <string>

#include "base/clock.h"
#include "base/result.h"

namespace kiln::vm {

class QmpClient;
class Vm;

// As a source (snapshot, fork parent): prepare_outgoing, stop, start_outgoing, finish_outgoing,
// resume. As a destination (a QEMU started with -incoming defer: restore, fork child, spare):
// prepare_incoming, start_incoming, finish_incoming. The stream goes through an fd handed to QEMU
// (getfd), which keeps QEMU's seccomp sandbox at spawn=deny (an exec: URI would need a shell).
// Borrows the Vm, which must outlive it; used from the Vm's owner thread.
class VmMigration {
public:
    explicit VmMigration(Vm& vm);

    // Source.
    // Everything before an outgoing migration that need not wait for the VM to stop: no bandwidth
    // or downtime limit, capabilities set (x-ignore-shared as asked), old MIGRATION events dropped.
    Status prepare_outgoing(bool ignore_shared);
    // The same for a live migration (a fork's parent): stop(), start_outgoing(), wait_until_active()
    // and resume(); QEMU copies the RAM once while the guest runs, then stops it for the pages
    // dirtied meanwhile and the device state, and leaves it stopped (postmigrate) until resume().
    Status prepare_live_outgoing();
    Status stop();  // the vCPUs stop
    // Starts writing the migration stream into `fd`; with x-ignore-shared, shared RAM is left out.
    Status start_outgoing(int fd);
    // Waits for the migration started by start_outgoing to end; cancels it at the deadline.
    Status finish_outgoing(Clock::time_point deadline);
    // Waits until QEMU has set the migration up (MIGRATION "active"): dirty tracking on.
    Status wait_until_active(Clock::time_point deadline);
    // prepare_outgoing, start_outgoing and finish_outgoing into a new file at `path` (the VM is
    // expected to be stopped already).
    Status write_to_file(const std::string& path, bool ignore_shared, Millis timeout);
    // cont on a migration source: QEMU announces "completed" a moment before it leaves the
    // finish-migrate state and refuses cont in between ("Migration is not finalized yet"), so
    // that one refusal is retried for up to 5 s.
    Status resume();
    // How long the vCPUs were stopped, from QEMU's own STOP and RESUME events (their timestamps,
    // in microseconds): after resume() of a source prepared here, whoever stopped it (stop(), or
    // QEMU for a live migration's last pass). Nullopt without both events.
    std::optional<double> paused_ms();

    // Destination.
    // Capabilities set and `fd` (the stream to load) handed to QEMU: all that can be done before
    // the load starts.
    Status prepare_incoming(int fd, bool ignore_shared);
    // Starts loading from the fd given to prepare_incoming.
    Status start_incoming();
    // Waits for the load to end and runs the loaded VM. A stream QEMU rejects makes QEMU exit: the
    // error then quotes qemu.log.
    Status finish_incoming(Clock::time_point deadline);
    // start_incoming, then finish_incoming; a refused migrate-incoming is restore_failed.
    Status load(Clock::time_point deadline);
    // prepare_incoming and load from the file at `path`.
    Status load_from_file(const std::string& path, bool ignore_shared, Millis timeout);

private:
    // The MIGRATION event that ends the current migration: its status ("completed", "failed" or
    // "cancelled"; with or_active also "active", the set-up done), or the QMP error (vm_gone, timeout).
    Result<std::string> wait_migration_end(Clock::time_point deadline, bool or_active = false);
    // Drops events left over from earlier migrations and stops of this QEMU, which would end a
    // wait early or time the wrong pause.
    void drop_old_events();
    Status status_error(const std::string& status);

    Vm& m_vm;
    QmpClient& m_qmp;
};

}  // namespace kiln::vm
