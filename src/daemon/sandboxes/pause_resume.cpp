// Pause and resume of sandboxes (docs/pause.md): LocalSandboxService's members that save a running
// sandbox to its private snapshot and end its VM, and restore it from there with the same id.
// Locking as in local_sandbox_service.cpp: m_mutex never held across a VM operation. A paused
// sandbox has no entry in m_live; its record is read and changed under m_mutex by resume, delete
// and set_ttl alike, so those three never act on it at once.
#include <thread>

#include "base/clock.h"
#include "base/db.h"
#include "base/file_util.h"
#include "base/json_log.h"
#include "daemon/sandboxes/local_sandbox_parts.h"
#include "daemon/sandboxes/sandbox_state.h"
#include "vm/jail/jail_settings.h"
#include "vm/vm_migration.h"

namespace kiln::daemon {

namespace {

Error not_running(const std::string& id, SandboxState state) {
    return make_error(ErrorCode::SandboxNotRunning, "sandbox " + id + " is " + state_name(state) + ", not running");
}

double ms_since(Clock::time_point start) { return std::chrono::duration<double, std::milli>(Clock::now() - start).count(); }

}  // namespace

Result<SandboxInfo> LocalSandboxService::pause(const Caller& caller, const std::string& id) {
    auto rec = TRY(owned_record(caller, id));
    if (rec.info.state() == SandboxState::Paused) return rec.info;
    // A pause writes the guest's whole memory and its disk's changes.
    if (m_config.disk) TRY(m_config.disk->check("pause a sandbox"));
    std::shared_ptr<Entry> entry;
    {
        std::lock_guard lock(m_mutex);
        if (m_stopping) return make_error(ErrorCode::Unavailable, "kilnd is shutting down");
        auto it = m_live.find(id);
        if (it == m_live.end()) return not_running(id, rec.info.state());
        SandboxInfo& info = it->second->record.info;
        if (info.state() == SandboxState::Pausing || info.state() == SandboxState::Resuming)
            return make_error(ErrorCode::Conflict, "sandbox " + id + " is " + state_name(info.state()) + "; try again once it is done");
        if (info.state() != SandboxState::Running || !it->second->box) return not_running(id, info.state());
        entry = it->second;
        info.move_to(SandboxState::Pausing);  // leases refuse it from now on; the reaper leaves it
        (void)save(entry->record);
    }
    return pause_entry(entry);
}

Result<SandboxInfo> LocalSandboxService::pause_entry(const std::shared_ptr<Entry>& entry) {
    auto start = Clock::now();
    std::shared_ptr<VmBox> box;
    int64_t ttl_left_ms = 0;
    std::string id;
    {
        std::lock_guard lock(m_mutex);
        id = entry->record.info.id;
        box = entry->box;
        if (!box || entry->record.info.state() != SandboxState::Pausing) return not_running(id, entry->record.info.state());
        // The TTL stops where the guest stops: what is left now is what the resume gets back.
        ttl_left_ms = std::max<int64_t>(0, m_config.clock.until(entry->ttl_deadline_ms));
    }
    std::lock_guard op(entry->op_mutex);  // after a snapshot or fork in flight
    const std::string dir = paused_dir(id);
    (void)remove_tree(dir);  // left by a pause whose record never said paused
    if (auto st = make_dirs(m_config.data_dir + "/paused", 0700); !st.ok()) return pause_failed(entry, box, st.error());
    vm::SnapshotRequest request;
    request.dir = dir;  // written as <dir>.partial, renamed when whole
    request.resume = false;  // the VM stays stopped: it is ended below
    request.checksums = false;
    auto manifest = save_vm(*box, request, "pause of " + id);
    if (!manifest.ok()) return pause_failed(entry, box, manifest.error());
    const double saved_ms = ms_since(start);
    // QEMU gone: its memory and slot are free. The network goes now, not in the background: a
    // resume makes one of the same name.
    box->vm->kill();
    std::unique_ptr<net::SandboxNetwork> network = std::move(box->network);
    network.reset();
    const uint64_t bytes = allocated_bytes(dir);
    SandboxInfo out;
    {
        std::lock_guard lock(m_mutex);
        SandboxInfo& info = entry->record.info;
        auto it = m_live.find(id);
        if (info.state() != SandboxState::Pausing || it == m_live.end() || it->second != entry) {
            // Deleted (or lost) while it was being paused: whoever ended it wrote its record.
            (void)remove_tree(dir);
            return not_running(id, info.state());
        }
        info.move_to(SandboxState::Paused);
        info.paused_at_ms = m_config.clock.wall_ms();
        info.ttl_left_ms = ttl_left_ms;
        info.paused_bytes = bytes;
        info.qemu_pid = 0;
        entry->record.run_dir.clear();
        entry->box.reset();
        m_live.erase(it);
        (void)save(entry->record);
        m_changed.notify_all();
        out = info;
    }
    box.reset();  // its jail and run dir, unless a lease still holds it (then when that ends)
    log::info("sandbox paused", {{"sandbox", id}, {"pause_ms", ms_since(start)}, {"saved_ms", saved_ms},
                                 {"bytes", bytes}, {"ttl_left_ms", ttl_left_ms}});
    return out;
}

Error LocalSandboxService::pause_failed(const std::shared_ptr<Entry>& entry, const std::shared_ptr<VmBox>& box,
                                        const Error& error) {
    const std::string id = entry->record.info.id;
    (void)remove_tree(paused_dir(id));
    (void)remove_tree(paused_dir(id) + ".partial");
    // The VM stopped for the save: it runs on if it still can (cont, then a renewed identity,
    // which also thaws its agent), else it is lost.
    Status resumed = error.code == ErrorCode::SandboxNotRunning ? Status(error) : vm::VmMigration(*box->vm).resume();
    if (resumed.ok()) resumed = box->vm->renew_identity();
    if (!resumed.ok()) {
        log::warn("sandbox pause failed, its VM with it", {{"sandbox", id}, {"error", error.to_string()},
                                                            {"resume_error", resumed.error().to_string()}});
        finish(entry, SandboxState::Lost, "the pause failed and the VM could not run on: " + error.message);
        return error;
    }
    {
        std::lock_guard lock(m_mutex);
        if (entry->record.info.state() == SandboxState::Pausing) {
            entry->record.info.move_to(SandboxState::Running);
            (void)save(entry->record);
        }
        m_changed.notify_all();
    }
    log::warn("sandbox pause failed; it runs on", {{"sandbox", id}, {"error", error.to_string()}});
    return error;
}

void LocalSandboxService::pause_in_background(const std::shared_ptr<Entry>& entry) {
    ++m_pauses_in_flight;  // m_mutex held (the reaper's pass)
    std::thread([this, entry] {
        auto paused = pause_entry(entry);
        if (!paused.ok()) log::warn("auto_pause at the end of the TTL failed", {{"sandbox", entry->record.info.id},
                                                                               {"error", paused.error().to_string()}});
        std::lock_guard lock(m_mutex);
        --m_pauses_in_flight;
        m_changed.notify_all();
    }).detach();
}

Status LocalSandboxService::remove_paused(SandboxRecord record) {
    SandboxInfo& info = record.info;
    if (!info.move_to(SandboxState::Deleted)) return make_error(ErrorCode::Internal, "sandbox " + info.id + " cannot be deleted now");
    info.ended_at_ms = now_unix_ms();
    info.paused_bytes = 0;
    // The record first: a crash between the two leaves a directory the reconcile removes.
    if (auto st = m_store.update_sandbox(record); !st.ok()) return store_error(st.error());
    (void)remove_tree(paused_dir(info.id));
    log::info("sandbox ended", {{"sandbox", info.id}, {"state", "deleted"}, {"was", "paused"}});
    return ok_status();
}

Result<SandboxInfo> LocalSandboxService::resume(const Caller& caller, const std::string& id, std::optional<int64_t> ttl_seconds) {
    auto start = Clock::now();
    if (ttl_seconds) TRY(checked_ttl(ttl_seconds));
    auto rec = TRY(owned_record(caller, id));
    if (rec.info.state() == SandboxState::Running) return rec.info;
    std::shared_ptr<Entry> entry;
    {
        std::lock_guard lock(m_mutex);
        if (m_stopping) return make_error(ErrorCode::Unavailable, "kilnd is shutting down");
        if (auto it = m_live.find(id); it != m_live.end()) {
            const SandboxInfo& live = it->second->record.info;
            if (live.state() == SandboxState::Running) return live;
            return make_error(ErrorCode::Conflict, "sandbox " + id + " is " + state_name(live.state()) +
                                                       "; resume it once it is paused");
        }
        auto stored = m_store.get_sandbox(id);
        if (!stored.ok()) return store_error(stored.error());
        if (!*stored) return make_error(ErrorCode::NotFound, "no sandbox '" + id + "'");
        SandboxRecord record = std::move(**stored);
        SandboxInfo& info = record.info;
        if (info.state() != SandboxState::Paused)
            return make_error(ErrorCode::SandboxNotRunning, "sandbox " + id + " is " + state_name(info.state()) + ", not paused");
        if (!info.host.empty() && info.host != m_config.host_name)
            return make_error(ErrorCode::Unavailable, "sandbox " + id + " is paused on host " + info.host + ", which resumes it");
        // Its snapshot's files are all there is: nothing starts unconfined, and a nearly full disk
        // refuses (the restore writes the VM's overlay and run dir).
        TRY(vm::jail::check_confinement());
        if (m_config.disk) TRY(m_config.disk->check("resume a sandbox"));
        // The TTL left at the pause; one that ended (an auto_pause at the end of the TTL) starts
        // again from kilnd's default.
        int64_t ttl_ms = ttl_seconds ? *ttl_seconds * 1000
                         : info.ttl_left_ms >= 1000 ? info.ttl_left_ms
                                                    : m_config.default_ttl_seconds * 1000;
        int64_t expires_at_ms = m_config.clock.wall_ms() + ttl_ms;
        TRY(check_lifetime(caller, info.created_at_ms, expires_at_ms));
        TRY(check_room(caller, info.memory_mib));  // as a create: it is live again from here on
        info.move_to(SandboxState::Resuming);
        info.expires_at_ms = expires_at_ms;
        if (auto st = m_store.update_sandbox(record); !st.ok()) return store_error(st.error());
        entry = std::make_shared<Entry>();
        entry->record = std::move(record);
        entry->ttl_deadline_ms = m_config.clock.deadline_of(expires_at_ms);
        m_live[id] = entry;
    }
    const SandboxInfo& info = entry->record.info;
    // A new network namespace: every guest has the same address (docs/network.md), so the guest
    // needs no change.
    std::unique_ptr<net::SandboxNetwork> network;
    vm::RestoreRequest restore;
    restore.snapshot_dir = paused_dir(id);
    restore.hostname = id;
    if (info.has_nic) {
        auto made = setup_network(id, info.network);
        if (!made.ok()) return resume_failed(entry, made.error());
        network = std::move(*made);
        restore.net = network->nic();
    }
    vm::RestoreTimings timings;
    auto restored = vm::restore_snapshot(restore, &timings);  // identity renewed: clock, entropy
    if (!restored.ok()) {
        network.reset();
        return resume_failed(entry, restored.error());
    }
    auto out = become_running(entry, std::move(*restored), std::move(network), ms_since(start),
                              {{"restore_ready_ms", timings.ready_ms}, {"loaded_ms", timings.loaded_ms}});
    {
        std::lock_guard lock(m_mutex);
        // Running again (its memory file stays mapped until its QEMU ends) or deleted meanwhile:
        // the snapshot is no longer wanted. Paused again (kilnd stopping): it is kept.
        if (entry->record.info.state() == SandboxState::Paused) return out;
    }
    (void)remove_tree(paused_dir(id));
    return out;
}

Error LocalSandboxService::resume_failed(const std::shared_ptr<Entry>& entry, const Error& error) {
    const std::string id = entry->record.info.id;
    bool deleted = false;
    {
        std::lock_guard lock(m_mutex);
        SandboxInfo& info = entry->record.info;
        if (info.state() == SandboxState::Resuming) {
            deleted = entry->cancelled;
            info.move_to(deleted ? SandboxState::Deleted : SandboxState::Paused);
            if (deleted) info.ended_at_ms = now_unix_ms();
            (void)save(entry->record);
        }
        m_live.erase(id);
        m_changed.notify_all();
    }
    if (deleted) (void)remove_tree(paused_dir(id));
    log::warn("sandbox resume failed", {{"sandbox", id}, {"error", error.to_string()}, {"now", deleted ? "deleted" : "paused"}});
    if (error.code == ErrorCode::Unavailable) return error;
    return make_error(ErrorCode::Internal, "resuming " + id + ": " + error.message + " (it stays paused)");
}

}  // namespace kiln::daemon
