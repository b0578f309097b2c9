// LocalSandboxService: creates, leases, TTLs and removal of sandboxes on this host (see
// local_sandbox_service.h). Locking: m_mutex guards the live set and each entry's record; it is
// never held across a VM operation (restore, snapshot, fork, destroy), only across store writes
// so that a sandbox's records reach the store in the order they changed.
#include "daemon/sandboxes/local_sandbox_service.h"
#include "daemon/sandboxes/local_sandbox_parts.h"

#include <cstdlib>
#include <future>

#include "base/clock.h"
#include "base/db.h"
#include "base/file_util.h"
#include "base/json_log.h"
#include "daemon/net/egress_options.h"
#include "daemon/sandboxes/ids.h"
#include "daemon/sandboxes/sandbox_state.h"
#include "vm/jail/jail_settings.h"
#include "vm/snapshot.h"
#include "vm/snapshot_any.h"
#include "vm/snapshot_manifest.h"
#include "vm/vm.h"

namespace kiln::daemon {

namespace {

Error not_found(const std::string& what, const std::string& id) {
    return make_error(ErrorCode::NotFound, "no " + what + " '" + id + "'");
}

// A VM-layer error as an API error: the VM going away is the sandbox not running.
Error vm_error(const std::string& what, const Error& e) {
    if (e.code == ErrorCode::VmGone) return make_error(ErrorCode::SandboxNotRunning, what + ": the sandbox's VM is gone: " + e.message);
    if (e.code == ErrorCode::NotSnapshottable) return make_error(ErrorCode::Conflict, what + ": " + e.message);
    return make_error(ErrorCode::Internal, what + ": " + e.to_string());
}

bool labels_match(const Labels& have, const Labels& want) {
    for (const auto& [k, v] : want) {
        auto it = have.find(k);
        if (it == have.end() || it->second != v) return false;
    }
    return true;
}

}  // namespace

LocalSandboxService::LocalSandboxService(ServiceConfig config, Store& store, TemplateBaker& baker, ServiceHooks hooks)
    : m_config(std::move(config)), m_store(store), m_baker(baker), m_hooks(std::move(hooks)) {
    m_reaper = std::thread([this] { reaper_loop(); });
}

LocalSandboxService::~LocalSandboxService() { shutdown(true); }

Status LocalSandboxService::save(const SandboxRecord& record) {
    std::lock_guard lock(m_unsaved_mutex);
    auto st = m_store.update_sandbox(record);
    if (st.ok()) {
        m_unsaved.erase(record.info.id);
        return st;
    }
    log::error("store update failed", {{"sandbox", record.info.id}, {"error", st.error().to_string()}, {"retried", true}});
    m_unsaved[record.info.id] = record;
    return st;
}

void LocalSandboxService::save_unsaved() {
    std::lock_guard lock(m_unsaved_mutex);
    for (auto it = m_unsaved.begin(); it != m_unsaved.end();) {
        auto st = m_store.update_sandbox(it->second);
        if (!st.ok() && st.error().code == ErrorCode::StoreUnavailable) return;  // still down: the next pass
        if (st.ok()) log::info("store: a sandbox record written late", {{"sandbox", it->first}, {"state", state_name(it->second.info.state())}});
        else log::error("store: a sandbox record could not be written", {{"sandbox", it->first}, {"error", st.error().to_string()}});
        it = m_unsaved.erase(it);
    }
}

Result<int64_t> LocalSandboxService::checked_ttl(std::optional<int64_t> ttl_seconds) const {
    int64_t ttl = ttl_seconds.value_or(m_config.default_ttl_seconds);
    if (ttl < 1 || ttl > m_config.max_ttl_seconds)
        return make_error(ErrorCode::InvalidArgument, "ttl_seconds must be between 1 and " +
                                                       std::to_string(m_config.max_ttl_seconds) + ", got " + std::to_string(ttl));
    return ttl;
}

Result<LocalSandboxService::Source> LocalSandboxService::resolve_template(const Caller& caller, const std::string& id) {
    if (const BuiltinTemplate* b = m_baker.find(id)) return Source{b->name, "", true, false, b->vcpus, b->memory_mib};
    if (is_snapshot_id(id)) {
        auto rec = m_store.get_snapshot(id);
        if (!rec.ok()) return store_error(rec.error());
        if (*rec && caller.may_touch((*rec)->info.owner_token_id)) {
            // Whether it has a NIC is in its manifest; an unreadable one fails the restore later,
            // with the VM layer's own clear error.
            bool nic = false;
            const std::string dir = snapshot_dir(id);
            if (auto text = read_file(dir + "/" + vm::kManifestFileName, vm::kMaxManifestBytes); text.ok())
                if (auto m = vm::parse_manifest(*text); m.ok()) nic = m->nic;
            return Source{id, dir, false, nic, (*rec)->info.vcpus, (*rec)->info.memory_mib};
        }
    }
    return make_error(ErrorCode::TemplateNotFound, "no template '" + id + "' (a built-in name such as tiny, or one of your snapshot ids)");
}

Status LocalSandboxService::check_room(const Caller& caller, uint32_t memory_mib) const {
    int64_t memory = 0, mine = 0, my_memory = 0;
    for (const auto& [id, e] : m_live) {
        memory += e->record.info.memory_mib;
        if (e->record.info.owner_token_id != caller.token_id) continue;
        ++mine;
        my_memory += e->record.info.memory_mib;
    }
    // The token's own quota first (docs/tenants.md): it names what the caller can change.
    if (caller.quota.sandboxes && mine >= *caller.quota.sandboxes)
        return make_error(ErrorCode::QuotaExceeded, "token quota sandboxes: at most " + std::to_string(*caller.quota.sandboxes) +
                                                     " live sandboxes for this token; delete one first");
    if (caller.quota.memory_mib && my_memory + memory_mib > *caller.quota.memory_mib)
        return make_error(ErrorCode::QuotaExceeded, "token quota memory_mib: this token's sandboxes would hold " +
                                                     std::to_string(my_memory + memory_mib) + " MiB, over its " +
                                                     std::to_string(*caller.quota.memory_mib) + " MiB");
    if (static_cast<int64_t>(m_live.size()) >= m_config.max_sandboxes)
        return make_error(ErrorCode::QuotaExceeded, "max_sandboxes: at most " + std::to_string(m_config.max_sandboxes) +
                                                     " live sandboxes on this host; delete one first");
    if (memory + memory_mib > m_config.max_memory_mib)
        return make_error(ErrorCode::QuotaExceeded, "max_memory_mib: committed memory would be " + std::to_string(memory + memory_mib) +
                                                     " MiB, over the limit of " + std::to_string(m_config.max_memory_mib) + " MiB");
    return ok_status();
}

Result<std::shared_ptr<LocalSandboxService::Entry>> LocalSandboxService::admit(const Caller& caller, SandboxRecord record) {
    auto entry = std::make_shared<Entry>();
    std::lock_guard lock(m_mutex);
    if (m_stopping) return make_error(ErrorCode::Unavailable, "kilnd is shutting down");
    TRY(check_room(caller, record.info.memory_mib));
    // 1. The record exists (creating) before any QEMU starts: a crash from here on is reconciled.
    if (auto st = m_store.insert_sandbox(record); !st.ok())
        return store_error(st.error());
    entry->record = std::move(record);
    entry->ttl_deadline_ms = m_config.clock.deadline_of(entry->record.info.expires_at_ms);
    m_live[entry->record.info.id] = entry;
    return entry;
}

Error LocalSandboxService::fail_create(const std::shared_ptr<Entry>& entry, const Error& error, bool restore_failure) {
    if (m_hooks.create_failed) m_hooks.create_failed(restore_failure);
    std::lock_guard lock(m_mutex);
    SandboxInfo& info = entry->record.info;
    // Still creating unless shutdown ended the record already (its wait for creates ran out).
    if (info.state() == SandboxState::Creating) {
        info.move_to(entry->cancelled ? SandboxState::Deleted : SandboxState::Failed);
        info.error = entry->cancelled ? "" : error.to_string();
        info.ended_at_ms = now_unix_ms();
        (void)save(entry->record);
    }
    m_live.erase(info.id);
    m_changed.notify_all();
    log::warn("sandbox create failed", {{"sandbox", info.id}, {"error", error.to_string()}});
    if (error.code == ErrorCode::TemplateNotFound || error.code == ErrorCode::Unavailable) return error;
    // A guest that did not answer in time on a host whose CPUs are all busy (density_bench: past
    // ~150 idle TCG guests on 2 cores) is the host's load, not a fault: 503 with the reason, so a
    // client retries later or elsewhere.
    if (error.code == ErrorCode::Timeout || error.code == ErrorCode::BootTimeout) {
        double load[1] = {0};
        std::string why = "creating " + info.id + ": the guest did not answer in time (" + std::to_string(m_live.size()) +
                          " sandboxes on this host";
        if (::getloadavg(load, 1) == 1) why += ", load " + std::to_string(int(load[0] + 0.5));
        return make_error(ErrorCode::Unavailable, why + "); try again later: " + error.message);
    }
    return make_error(ErrorCode::Internal, "creating " + info.id + ": " + error.message);
}

Result<std::unique_ptr<net::SandboxNetwork>> LocalSandboxService::setup_network(const std::string& id,
                                                                              const net::NetworkPolicy& policy) {
    if (!m_config.networks) return make_error(ErrorCode::Unavailable, "sandbox networking is not enabled in this kilnd");
    return m_config.networks->setup(id, policy);
}

Result<SandboxInfo> LocalSandboxService::become_running(const std::shared_ptr<Entry>& entry, std::unique_ptr<vm::Vm> vm,
                                                        std::unique_ptr<net::SandboxNetwork> network, double create_ms,
                                                        const nlohmann::json& log_fields) {
    // kilnd keeps its copy of the tap fd until the network is removed (in the background): the tap
    // then outlives QEMU, whose exit would otherwise wait for the kernel to unregister it (an RCU
    // grace period or more), and with it the DELETE that kills QEMU.
    auto box = std::make_shared<VmBox>();
    vm->agent().set_frame_send_timeout(m_config.agent_send_timeout);
    box->vm = std::move(vm);
    box->network = std::move(network);
    box->network_remover = m_network_remover;
    std::unique_lock lock(m_mutex);
    SandboxInfo& info = entry->record.info;
    const bool resuming = info.state() == SandboxState::Resuming;
    if (entry->cancelled || m_stopping) {
        // Deleted (or kilnd stopping) while it was being created: the VM never becomes visible.
        // Still creating unless shutdown ended the record already (its wait for creates ran out).
        // A resume that kilnd's stop cut short stays paused: its snapshot is still there.
        if (resuming && !entry->cancelled) {
            info.move_to(SandboxState::Paused);
            (void)save(entry->record);
        } else if (info.state() == SandboxState::Creating || resuming) {
            info.move_to(SandboxState::Deleted);
            info.ended_at_ms = now_unix_ms();
            (void)save(entry->record);
        }
        m_live.erase(info.id);
        m_changed.notify_all();
        lock.unlock();
        box.reset();
        return make_error(entry->cancelled ? ErrorCode::NotFound : ErrorCode::Unavailable,
                          entry->cancelled ? "sandbox " + info.id + " was deleted while it was being " + (resuming ? "resumed" : "created")
                                           : "kilnd is shutting down");
    }
    // From creating or resuming: only shutdown ends such a record early, and it sets m_stopping first.
    info.move_to(SandboxState::Running);
    info.qemu_pid = box->vm->pid();
    if (resuming) {
        info.paused_at_ms = 0;
        info.ttl_left_ms = 0;
        info.paused_bytes = 0;
    } else {
        info.create_ms = create_ms;
    }
    entry->record.run_dir = box->vm->run_dir();
    entry->box = box;
    (void)save(entry->record);
    m_changed.notify_all();  // the reaper learns of a new deadline
    SandboxInfo out = info;
    lock.unlock();
    if (m_hooks.created && !resuming) m_hooks.created(create_ms);
    nlohmann::json fields = {{"sandbox", out.id}, {"template", out.template_id}, {resuming ? "resume_ms" : "create_ms", create_ms},
                             {"qemu_pid", out.qemu_pid}, {"parent", out.parent_id}, {"network", net::mode_name(out.network.mode)},
                             {"nic", out.has_nic}};
    fields.update(log_fields);
    log::info(resuming ? "sandbox resumed" : "sandbox created", fields);
    return out;
}

Result<SandboxInfo> LocalSandboxService::create(const Caller& caller, const CreateRequest& request) {
    auto start = Clock::now();
    TRY(validate_metadata(request.metadata));
    TRY(validate_env(request.env));
    // No VM starts unconfined unless the operator allowed it (docs/security.md): 503, nothing made.
    TRY(vm::jail::check_confinement());
    if (m_config.accepting) TRY(m_config.accepting());
    Source source = TRY(resolve_template(caller, request.template_id));
    if (request.vcpus && *request.vcpus != source.vcpus)
        return make_error(ErrorCode::InvalidArgument, "vcpus must be " + std::to_string(source.vcpus) + " for template " +
                                                       source.template_id + " (a snapshot fixes it)");
    if (request.memory_mib && *request.memory_mib != source.memory_mib)
        return make_error(ErrorCode::InvalidArgument, "memory_mib must be " + std::to_string(source.memory_mib) +
                                                       " for template " + source.template_id + " (a snapshot fixes it)");
    int64_t ttl = TRY(checked_ttl(request.ttl_seconds));
    // No TTL asked for: the default, cut to what the token's lifetime cap allows.
    if (!request.ttl_seconds && caller.quota.lifetime_seconds) ttl = std::min(ttl, std::max<int64_t>(1, *caller.quota.lifetime_seconds));
    // A NIC when the policy lets anything out (built-ins then restore their NIC variant), or when
    // the snapshot has one (the device set is in its saved state; mode none then drops all).
    net::NetworkPolicy policy = request.network.value_or(m_config.default_network);
    if (request.network && !caller.is_admin()) TRY(net::check_tenant_allowlist(policy, m_config.private_allow));
    bool nic = source.nic || policy.mode != net::NetworkMode::None;
    if (nic && !source.builtin && !source.nic)
        return make_error(ErrorCode::InvalidArgument, "network mode " + std::string(net::mode_name(policy.mode)) + " needs a NIC, and snapshot " +
                                                       source.template_id + " was taken from a sandbox without one (network mode none)");
    if (nic && !m_config.networks) return make_error(ErrorCode::Unavailable, "sandbox networking is not enabled in this kilnd");
    // A restore writes the VM's overlay and run dir, and a built-in's first use bakes it.
    if (m_config.disk) TRY(m_config.disk->check("create a sandbox"));

    SandboxRecord record;
    SandboxInfo& info = record.info;
    info.id = TRY(new_sandbox_id());
    info.host = m_config.host_name;
    info.owner_token_id = caller.token_id;  // the state is creating, as every new record's
    info.network = policy;
    info.has_nic = nic;
    info.template_id = source.template_id;
    info.created_at_ms = m_config.clock.wall_ms();
    info.expires_at_ms = info.created_at_ms + ttl * 1000;
    TRY(check_lifetime(caller, info.created_at_ms, info.expires_at_ms));
    info.metadata = request.metadata;
    info.env = request.env;
    info.auto_pause = request.auto_pause;
    info.vcpus = source.vcpus;
    info.memory_mib = source.memory_mib;
    auto entry = TRY(admit(caller, std::move(record)));

    // 2. The template's snapshot: a built-in one is baked on first use (concurrent creates wait
    //    for one bake). 3. Restore: QEMU starts only now.
    if (source.builtin) {
        auto dir = m_baker.ensure(source.template_id, nic);
        if (!dir.ok()) return fail_create(entry, dir.error(), false);
        source.snapshot_dir = *dir;
    }
    vm::RestoreRequest restore;
    restore.snapshot_dir = source.snapshot_dir;
    restore.hostname = entry->record.info.id;  // what `hostname` says inside is the API's id
    // Spares only for built-ins: one idle QEMU per user snapshot would cost more than it saves.
    // With a NIC, only a spare whose network was made ahead (the tap must exist when its QEMU starts).
    const bool use_spares = source.builtin && m_config.spares && (!nic || m_config.spare_networks);
    vm::RestoreTimings timings;
    std::unique_ptr<net::SandboxNetwork> network;
    double network_ms = 0;
    std::unique_ptr<vm::Vm> vm;
    if (use_spares && nic) {
        //    A spare with its network (policy none so far): the network becomes this sandbox's, its
        //    policy's rules loaded, before the create returns and anything runs in the guest.
        //    The claim (rename, policy rules: 2-5 ms) runs on its own thread beside the device state's
        //    load and the identity renewal: until its rules are in, the spare's policy none drops
        //    everything the guest sends, and the create returns only once both are done.
        std::unique_ptr<vm::SpareNic> spare_nic;
        std::future<Result<std::unique_ptr<net::SandboxNetwork>>> claiming;
        const std::string& id = entry->record.info.id;
        restore.spares = m_config.spares;
        restore.spare_nic = &spare_nic;
        restore.on_spare_nic = [&] {
            claiming = std::async(std::launch::async, [nic = std::move(spare_nic), &id, &policy, &network_ms]() mutable {
                auto net_start = Clock::now();
                auto claimed = net::SpareNetworks::claim(std::move(nic), id, policy);
                network_ms = std::chrono::duration<double, std::milli>(Clock::now() - net_start).count();
                return claimed;
            });
        };
        auto restored = vm::restore_snapshot(restore, &timings);
        if (claiming.valid()) {  // the spare was taken: its outcome is this create's
            auto claimed = claiming.get();
            if (!restored.ok()) return fail_create(entry, restored.error(), true);  // its QEMU is gone, then its network
            if (!claimed.ok()) {
                (*restored)->destroy();
                return fail_create(entry, claimed.error(), false);
            }
            vm = std::move(*restored);
            network = std::move(*claimed);
        }
        restore.spares = nullptr;
        restore.spare_nic = nullptr;
        restore.on_spare_nic = nullptr;
    }
    if (!vm) {
        //    With a NIC and no spare ready for it, its network first (the record exists, so a crash
        //    from here on is swept), then QEMU.
        if (nic) {
            auto net_start = Clock::now();
            auto made = setup_network(entry->record.info.id, policy);
            if (!made.ok()) return fail_create(entry, made.error(), false);
            network = std::move(*made);
            network_ms = std::chrono::duration<double, std::milli>(Clock::now() - net_start).count();
            restore.net = network->nic();
        } else if (use_spares) {
            restore.spares = m_config.spares;
        }
        auto restored = vm::restore_snapshot(restore, &timings);
        if (!restored.ok()) return fail_create(entry, restored.error(), true);
        vm = std::move(*restored);
        // The first create with a NIC since kilnd started (or one in a burst): a spare with its
        // network for the next one; the restore of a spare refills it from then on.
        if (use_spares && nic) m_config.spares->prepare(source.snapshot_dir, m_config.spare_networks->source());
    }
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return become_running(entry, std::move(vm), std::move(network), ms,
                          {{"spare", timings.spare}, {"warm_spare", timings.warm_spare}, {"restore_ready_ms", timings.ready_ms},
                           {"loaded_ms", timings.loaded_ms}, {"network_ms", network_ms}});
}

Result<SandboxRecord> LocalSandboxService::owned_record(const Caller& caller, const std::string& id) {
    if (!is_sandbox_id(id)) return not_found("sandbox", id);
    {
        std::lock_guard lock(m_mutex);
        if (auto it = m_live.find(id); it != m_live.end()) {
            if (!caller.may_touch(it->second->record.info.owner_token_id)) return not_found("sandbox", id);
            return it->second->record;
        }
    }
    auto rec = m_store.get_sandbox(id);
    if (!rec.ok()) return store_error(rec.error());
    if (!*rec || !caller.may_touch((*rec)->info.owner_token_id)) return not_found("sandbox", id);
    return std::move(**rec);
}

Result<SandboxInfo> LocalSandboxService::get(const Caller& caller, const std::string& id) {
    return TRY(owned_record(caller, id)).info;
}

Result<std::vector<SandboxInfo>> LocalSandboxService::list(const Caller& caller, const ListFilter& filter) {
    TRY(validate_metadata(filter.metadata));
    bool live_only = !filter.all_states && !filter.state;
    if (filter.every_owner && !caller.is_admin())
        return make_error(ErrorCode::Forbidden, "owner=all lists every token's sandboxes and needs the admin scope");
    auto records = m_store.list_sandboxes(filter.every_owner ? 0 : caller.token_id, live_only);
    if (!records.ok()) return store_error(records.error());
    std::vector<SandboxInfo> out;
    for (auto& r : *records) {
        if (filter.state && r.info.state() != *filter.state) continue;
        if (!labels_match(r.info.metadata, filter.metadata)) continue;
        out.push_back(std::move(r.info));
    }
    return out;
}

Result<SandboxInfo> LocalSandboxService::set_ttl(const Caller& caller, const std::string& id, int64_t ttl_seconds) {
    if (ttl_seconds < 1 || ttl_seconds > m_config.max_ttl_seconds)
        return make_error(ErrorCode::InvalidArgument, "ttl_seconds must be between 1 and " + std::to_string(m_config.max_ttl_seconds));
    auto rec = TRY(owned_record(caller, id));
    std::lock_guard lock(m_mutex);
    auto it = m_live.find(id);
    if (it == m_live.end() && rec.info.state() == SandboxState::Paused) {
        // Paused (checked again under the lock, which resume and delete take too): the TTL it
        // will have when resumed.
        auto stored = m_store.get_sandbox(id);
        if (!stored.ok()) return store_error(stored.error());
        if (*stored && (*stored)->info.state() == SandboxState::Paused) {
            SandboxRecord& r = **stored;
            r.info.ttl_left_ms = ttl_seconds * 1000;
            if (auto st = m_store.update_sandbox(r); !st.ok()) return store_error(st.error());
            return r.info;
        }
    }
    if (it == m_live.end() || it->second->record.info.state() != SandboxState::Running)
        return make_error(ErrorCode::SandboxNotRunning, "sandbox " + id + " is " + state_name(rec.info.state()) + ", not running");
    SandboxRecord& r = it->second->record;
    const int64_t expires_at_ms = m_config.clock.wall_ms() + ttl_seconds * 1000;
    TRY(check_lifetime(caller, r.info.created_at_ms, expires_at_ms));
    r.info.expires_at_ms = expires_at_ms;
    it->second->ttl_deadline_ms = m_config.clock.deadline_of(r.info.expires_at_ms);
    if (auto st = save(r); !st.ok()) return store_error(st.error());
    m_changed.notify_all();
    return r.info;
}

void LocalSandboxService::finish(const std::shared_ptr<Entry>& entry, SandboxState final_state, const std::string& error) {
    std::shared_ptr<VmBox> box;
    {
        std::lock_guard lock(m_mutex);
        SandboxInfo& info = entry->record.info;
        // One finisher per sandbox: a delete, the reaper and shutdown can race for the same one;
        // the first takes it out of the live set, the others find it gone and leave it alone.
        auto it = m_live.find(info.id);
        if (it == m_live.end() || it->second != entry) return;
        if (final_state == SandboxState::Deleted) {
            if (!info.move_to(SandboxState::Deleting)) return;  // visible while the VM goes away
            (void)save(entry->record);
        } else if (!can_transition(info.state(), final_state)) {
            log_forbidden_move(info.id, info.state(), final_state);  // checked before the VM is killed
            return;
        }
        box = std::move(entry->box);
        m_live.erase(it);
    }
    // Kill first, so an exec in flight on a lease fails now. Once QEMU has exited the sandbox is
    // ended and recorded so; its jail (cgroup, uid, run dir) goes after that, when the last holder
    // drops the VM object, which is here unless a lease is still in flight.
    auto destroy_start = Clock::now();
    if (box) box->vm->kill();
    {
        std::lock_guard lock(m_mutex);
        SandboxInfo& info = entry->record.info;
        if (info.move_to(final_state)) {
            info.error = error;
            info.ended_at_ms = now_unix_ms();
            info.qemu_pid = 0;
            (void)save(entry->record);
        }
        m_changed.notify_all();
    }
    box.reset();
    double destroy_ms = std::chrono::duration<double, std::milli>(Clock::now() - destroy_start).count();
    log::info("sandbox ended", {{"sandbox", entry->record.info.id}, {"state", state_name(final_state)}, {"error", error},
                                {"destroy_ms", destroy_ms}});
}

Status LocalSandboxService::remove(const Caller& caller, const std::string& id) {
    auto rec = TRY(owned_record(caller, id));
    std::shared_ptr<Entry> entry;
    {
        std::lock_guard lock(m_mutex);
        auto it = m_live.find(id);
        if (it == m_live.end()) {
            // Paused: no VM, only its snapshot. Read again under the lock, which resume takes too.
            if (rec.info.state() != SandboxState::Paused) return ok_status();  // finished already: a no-op
            auto stored = m_store.get_sandbox(id);
            if (!stored.ok()) return store_error(stored.error());
            if (!*stored || (*stored)->info.state() != SandboxState::Paused) return ok_status();
            return remove_paused(std::move(**stored));
        }
        entry = it->second;
        if (entry->record.info.state() == SandboxState::Creating || entry->record.info.state() == SandboxState::Resuming) {
            entry->cancelled = true;  // the create (or resume) sees this and destroys its VM
            return ok_status();
        }
    }
    finish(entry, SandboxState::Deleted, "");
    return ok_status();
}

Result<std::shared_ptr<SandboxLease>> LocalSandboxService::lease(const Caller& caller, const std::string& id) {
    auto rec = TRY(owned_record(caller, id));
    std::lock_guard lock(m_mutex);
    auto it = m_live.find(id);
    if (it == m_live.end() || !it->second->box || it->second->record.info.state() != SandboxState::Running)
        return make_error(ErrorCode::SandboxNotRunning, "sandbox " + id + " is " + state_name(rec.info.state()) + ", not running");
    return std::shared_ptr<SandboxLease>(std::make_shared<Lease>(it->second->record.info, it->second->box));
}

Result<SnapshotInfo> LocalSandboxService::snapshot(const Caller& caller, const std::string& id, const std::string& name) {
    if (!name.empty()) TRY(validate_name(name));
    auto rec = TRY(owned_record(caller, id));
    // A snapshot writes the guest's whole memory and its disk's changes.
    if (m_config.disk) TRY(m_config.disk->check("take a snapshot"));
    std::shared_ptr<Entry> entry;
    std::shared_ptr<VmBox> box;
    {
        std::lock_guard lock(m_mutex);
        if (m_stopping) return make_error(ErrorCode::Unavailable, "kilnd is shutting down");
        auto it = m_live.find(id);
        if (it == m_live.end() || !it->second->box)
            return make_error(ErrorCode::SandboxNotRunning, "sandbox " + id + " is " + state_name(rec.info.state()) + ", not running");
        entry = it->second;
        box = entry->box;
    }
    TRY(check_snapshot_quota(caller));
    std::lock_guard op(entry->op_mutex);
    SnapshotRecord snap;
    snap.info.id = TRY(new_snapshot_id());
    snap.info.hosts = {m_config.host_name};
    snap.info.name = name;
    snap.info.owner_token_id = caller.token_id;
    snap.info.sandbox_id = id;
    snap.info.template_id = rec.info.template_id;
    snap.info.vcpus = rec.info.vcpus;
    snap.info.memory_mib = rec.info.memory_mib;
    snap.dir = snapshot_dir(snap.info.id);
    TRY(make_dirs(m_config.data_dir + "/snapshots", 0700));
    vm::SnapshotRequest request;
    request.dir = snap.dir;  // written as <dir>.partial, renamed when whole: a crash leaves no half snapshot
    request.id = snap.info.id;
    request.resume = true;
    request.checksums = false;
    auto manifest = TRY(save_vm(*box, request, "snapshot of " + id));
    snap.info.created_at_ms = manifest.created_unix_ms;
    snap.info.size_bytes = allocated_bytes(snap.dir);
    if (auto st = m_store.insert_snapshot(snap); !st.ok()) {
        (void)remove_tree(snap.dir);
        return store_error(st.error());
    }
    log::info("snapshot taken", {{"sandbox", id}, {"snapshot", snap.info.id}, {"bytes", snap.info.size_bytes}});
    return snap.info;
}

Result<vm::SnapshotManifest> LocalSandboxService::save_vm(VmBox& box, const vm::SnapshotRequest& request, const std::string& what) {
    std::unique_ptr<net::SandboxNetwork> helper_network;
    std::optional<vm::NetDevice> helper_nic;
    if (box.network) {
        auto tag = TRY(new_snapshot_id());  // a fresh name: a pause's id is its sandbox's, which has a network already
        auto made = setup_network(net::local_network_prefix("snap", m_config.data_dir) + tag.substr(tag.find('-') + 1),
                                  net::NetworkPolicy{});
        if (!made.ok()) return make_error(made.error().code == ErrorCode::Unavailable ? ErrorCode::Unavailable : ErrorCode::Internal,
                                          what + ": " + made.error().message);
        helper_network = std::move(*made);
        helper_nic = helper_network->nic();
    }
    auto manifest = vm::snapshot_any_vm(*box.vm, request, helper_nic);
    helper_network.reset();
    if (!manifest.ok()) return vm_error(what, manifest.error());
    return std::move(*manifest);
}

Status LocalSandboxService::check_snapshot_quota(const Caller& caller) {
    if (!caller.quota.snapshots && !caller.quota.snapshot_mib) return ok_status();
    auto records = m_store.list_snapshots(caller.token_id);
    if (!records.ok()) return store_error(records.error());
    int64_t bytes = 0;
    for (const auto& r : *records) bytes += r.info.size_bytes;
    // A paused sandbox's snapshot is disk this token holds too (docs/pause.md).
    auto sandboxes = m_store.list_sandboxes(caller.token_id, true);
    if (!sandboxes.ok()) return store_error(sandboxes.error());
    for (const auto& r : *sandboxes) bytes += static_cast<int64_t>(r.info.paused_bytes);
    if (caller.quota.snapshots && static_cast<int64_t>(records->size()) >= *caller.quota.snapshots)
        return make_error(ErrorCode::QuotaExceeded, "token quota snapshots: this token keeps " + std::to_string(records->size()) +
                                                     " snapshots, its limit is " + std::to_string(*caller.quota.snapshots) +
                                                     "; delete one first");
    // A snapshot's size is known only once taken: the check is that the token is under its limit
    // before it starts, so one snapshot may carry it over (by at most that snapshot's size).
    if (caller.quota.snapshot_mib && bytes >= *caller.quota.snapshot_mib * (int64_t(1) << 20))
        return make_error(ErrorCode::QuotaExceeded, "token quota snapshot_mib: this token's snapshots hold " +
                                                     std::to_string(bytes >> 20) + " MiB, its limit is " +
                                                     std::to_string(*caller.quota.snapshot_mib) + " MiB; delete one first");
    return ok_status();
}

Status LocalSandboxService::check_lifetime(const Caller& caller, int64_t created_at_ms, int64_t expires_at_ms) {
    if (!caller.quota.lifetime_seconds) return ok_status();
    int64_t last = created_at_ms + *caller.quota.lifetime_seconds * 1000;
    if (expires_at_ms <= last) return ok_status();
    return make_error(ErrorCode::QuotaExceeded, "token quota lifetime_seconds: a sandbox of this token lives at most " +
                                                 std::to_string(*caller.quota.lifetime_seconds) + " s from its creation; "
                                                 "the largest ttl_seconds now is " +
                                                 std::to_string(std::max<int64_t>(0, (last - now_unix_ms()) / 1000)));
}

Result<SandboxInfo> LocalSandboxService::fork(const Caller& caller, const std::string& id, const ForkRequest& request) {
    auto start = Clock::now();
    TRY(validate_metadata(request.metadata));
    int64_t ttl = TRY(checked_ttl(request.ttl_seconds));
    // No TTL asked for: the default, cut to what the token's lifetime cap allows.
    if (!request.ttl_seconds && caller.quota.lifetime_seconds) ttl = std::min(ttl, std::max<int64_t>(1, *caller.quota.lifetime_seconds));
    auto parent_rec = TRY(owned_record(caller, id));
    if (m_config.disk) TRY(m_config.disk->check("fork a sandbox"));
    std::shared_ptr<Entry> parent;
    std::shared_ptr<VmBox> box;
    {
        std::lock_guard lock(m_mutex);
        auto it = m_live.find(id);
        if (it == m_live.end() || !it->second->box)
            return make_error(ErrorCode::SandboxNotRunning, "sandbox " + id + " is " + state_name(parent_rec.info.state()) + ", not running");
        parent = it->second;
        box = parent->box;
        parent_rec = parent->record;
    }
    SandboxRecord record;
    SandboxInfo& info = record.info;
    info.id = TRY(new_sandbox_id());
    info.host = m_config.host_name;  // a fork stays on its parent's host: it shares its files
    info.owner_token_id = caller.token_id;
    info.template_id = parent_rec.info.template_id;
    info.created_at_ms = m_config.clock.wall_ms();
    info.expires_at_ms = info.created_at_ms + ttl * 1000;
    TRY(check_lifetime(caller, info.created_at_ms, info.expires_at_ms));
    info.metadata = request.metadata.empty() ? parent_rec.info.metadata : request.metadata;
    info.env = parent_rec.info.env;
    info.vcpus = parent_rec.info.vcpus;
    info.memory_mib = parent_rec.info.memory_mib;
    info.parent_id = id;
    // The child has the parent's device set, so a NIC iff the parent has one, and its policy.
    info.network = parent_rec.info.network;
    info.has_nic = parent_rec.info.has_nic;
    auto entry = TRY(admit(caller, std::move(record)));
    std::unique_ptr<net::SandboxNetwork> network;
    if (entry->record.info.has_nic) {
        auto made = setup_network(entry->record.info.id, entry->record.info.network);
        if (!made.ok()) return fail_create(entry, made.error(), false);
        network = std::move(*made);
    }
    std::lock_guard op(parent->op_mutex);
    vm::ForkRequest child_request;
    child_request.hostname = entry->record.info.id;
    if (network) child_request.net = network->nic();
    child_request.spares = m_config.spares;  // the spare of the parent's template, if it has one
    vm::ForkTimings timings;
    auto child = vm::fork_vm(*box->vm, child_request, &timings);
    if (!child.ok()) {
        Error e = vm_error("fork of " + id, child.error());
        (void)fail_create(entry, e, false);
        return e;
    }
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return become_running(entry, std::move(*child), std::move(network), ms,
                          {{"spare", timings.spare}, {"parent_paused_ms", timings.parent_paused_ms},
                           {"child_loaded_ms", timings.child_loaded_ms}, {"child_ready_ms", timings.child_ready_ms}});
}

Result<std::vector<SnapshotInfo>> LocalSandboxService::list_snapshots(const Caller& caller) {
    auto records = m_store.list_snapshots(caller.token_id);
    if (!records.ok()) return store_error(records.error());
    std::vector<SnapshotInfo> out;
    for (auto& r : *records) out.push_back(std::move(r.info));
    return out;
}

Result<SnapshotInfo> LocalSandboxService::get_snapshot(const Caller& caller, const std::string& id) {
    if (!is_snapshot_id(id)) return not_found("snapshot", id);
    auto rec = m_store.get_snapshot(id);
    if (!rec.ok()) return store_error(rec.error());
    if (!*rec || !caller.may_touch((*rec)->info.owner_token_id)) return not_found("snapshot", id);
    return (*rec)->info;
}

Status LocalSandboxService::remove_snapshot(const Caller& caller, const std::string& id) {
    TRY(get_snapshot(caller, id));
    auto rec = m_store.get_snapshot(id);
    if (!rec.ok() || !*rec) return not_found("snapshot", id);
    // The record goes first: a crash between the two leaves a directory the reconcile removes.
    if (auto st = m_store.delete_snapshot(id); !st.ok()) return store_error(st.error());
    if (m_config.spares) m_config.spares->discard(snapshot_dir(id));
    (void)remove_tree(snapshot_dir(id));
    log::info("snapshot deleted", {{"snapshot", id}});
    return ok_status();
}

Result<std::vector<TemplateInfo>> LocalSandboxService::list_templates(const Caller& caller) {
    std::vector<TemplateInfo> out;
    for (const auto& b : m_baker.builtins()) out.push_back(TRY(get_template(caller, b.name)));
    for (const auto& s : TRY(list_snapshots(caller))) {
        TemplateInfo t;
        t.id = s.id;
        t.kind = "snapshot";
        t.name = s.name;
        t.ready = true;
        t.vcpus = s.vcpus;
        t.memory_mib = s.memory_mib;
        t.created_at_ms = s.created_at_ms;
        out.push_back(std::move(t));
    }
    return out;
}

Result<TemplateInfo> LocalSandboxService::get_template(const Caller& caller, const std::string& id) {
    if (const BuiltinTemplate* b = m_baker.find(id)) {
        TemplateInfo t;
        t.id = b->name;
        t.kind = "builtin";
        t.name = b->name;
        t.image = b->image;
        t.vcpus = b->vcpus;
        t.memory_mib = b->memory_mib;
        t.ready = m_baker.baked_dir(b->name).has_value();
        t.created_at_ms = t.ready ? m_baker.baked_at_ms(b->name) : 0;
        return t;
    }
    auto s = get_snapshot(caller, id);
    if (!s.ok()) return make_error(ErrorCode::NotFound, "no template '" + id + "'");
    TemplateInfo t;
    t.id = s->id;
    t.kind = "snapshot";
    t.name = s->name;
    t.ready = true;
    t.vcpus = s->vcpus;
    t.memory_mib = s->memory_mib;
    t.created_at_ms = s->created_at_ms;
    return t;
}

Status LocalSandboxService::remove_template(const Caller& caller, const std::string& id) {
    if (m_baker.find(id)) {
        // A built-in's bake is everyone's: dropping it makes every tenant's next create bake again.
        if (!caller.is_admin())
            return make_error(ErrorCode::Forbidden, "deleting built-in template " + id + " needs the admin scope");
        auto st = m_baker.drop(id);
        if (!st.ok()) return make_error(ErrorCode::Internal, "dropping template " + id + ": " + st.error().message);
        return ok_status();
    }
    if (is_snapshot_id(id)) return remove_snapshot(caller, id);
    return make_error(ErrorCode::NotFound, "no template '" + id + "'");
}

std::map<std::string, int64_t> LocalSandboxService::count_by_state() {
    auto counts = m_store.count_sandboxes_by_state();
    if (counts.ok()) return *counts;
    std::map<std::string, int64_t> zero;
    for (auto s : kAllSandboxStates) zero[state_name(s)] = 0;
    return zero;
}

std::vector<std::string> LocalSandboxService::live_ids() {
    std::lock_guard lock(m_mutex);
    std::vector<std::string> out;
    for (const auto& [id, e] : m_live) out.push_back(id);
    return out;
}

void LocalSandboxService::fence(const std::vector<std::string>& ids) {
    std::vector<std::shared_ptr<VmBox>> boxes;
    {
        std::lock_guard lock(m_mutex);
        for (const auto& id : ids) {
            auto it = m_live.find(id);
            // A create in flight is left to finish: the next beat fences it once it runs.
            if (it == m_live.end() || it->second->record.info.state() != SandboxState::Running) continue;
            // The record says lost already (another host wrote it): only the memory follows.
            it->second->record.info.move_to(SandboxState::Lost);
            boxes.push_back(std::move(it->second->box));
            m_live.erase(it);
        }
        m_changed.notify_all();
    }
    for (auto& box : boxes)
        if (box) box->vm->kill();
    for (const auto& id : ids) log::warn("sandbox fenced: its VM ended here", {{"sandbox", id}});
}

void LocalSandboxService::reap_once() {
    struct Due {
        std::shared_ptr<Entry> entry;
        SandboxState state;
        std::string error;
    };
    std::vector<Due> due;
    {
        std::lock_guard lock(m_mutex);
        for (const auto& [id, e] : m_live) {
            if (e->record.info.state() != SandboxState::Running || !e->box) continue;
            if (m_config.clock.until(e->ttl_deadline_ms) <= 0 && e->record.info.auto_pause && !m_stopping) {
                // auto_pause: paused instead of expired (pausing now, so the next pass skips it).
                e->record.info.move_to(SandboxState::Pausing);
                (void)save(e->record);
                pause_in_background(e);
            } else if (m_config.clock.until(e->ttl_deadline_ms) <= 0) {
                due.push_back({e, SandboxState::Expired, ""});
            } else if (auto gone = e->box->vm->agent().gone_error()) {
                // Why the connection ended: QEMU's exit, a guest panic, or a guest that stopped
                // reading (the agent client ends the connection then; the VM is killed below).
                due.push_back({e, SandboxState::Lost, "the VM stopped: " + gone->message});
            }
        }
    }
    for (auto& d : due) {
        // The TTL is a kill from the host (SIGKILL to QEMU): nothing in the guest can delay it.
        finish(d.entry, d.state, d.error);
    }
}

void LocalSandboxService::reaper_loop() {
    std::unique_lock lock(m_mutex);
    while (!m_stopping) {
        // Wake at the next deadline, and at least every 250 ms to notice VMs that died.
        int64_t wait_ms = 250;
        for (const auto& [id, e] : m_live) {
            if (e->record.info.state() == SandboxState::Running)
                wait_ms = std::min<int64_t>(wait_ms, std::max<int64_t>(0, m_config.clock.until(e->ttl_deadline_ms)));
        }
        if (wait_ms > 0) m_changed.wait_for(lock, std::chrono::milliseconds(wait_ms));
        if (m_stopping) break;
        lock.unlock();
        reap_once();
        save_unsaved();
        lock.lock();
    }
}

void LocalSandboxService::shutdown(bool destroy_sandboxes) {
    {
        std::unique_lock lock(m_mutex);
        if (m_shut_down) return;
        m_shut_down = true;
        m_stopping = true;
        m_changed.notify_all();
        // Creates in flight end on their own (become_running refuses now); wait for them briefly.
        m_changed.wait_for(lock, std::chrono::seconds(30), [&] {
            for (const auto& [id, e] : m_live) {
                SandboxState st = e->record.info.state();
                if (st == SandboxState::Creating || st == SandboxState::Pausing || st == SandboxState::Resuming) return false;
            }
            return true;
        });
        // The auto-pauses' threads use this service: none may outlive it (each ends within its
        // VM-layer timeouts).
        m_changed.wait(lock, [&] { return m_pauses_in_flight == 0; });
    }
    if (m_reaper.joinable()) m_reaper.join();
    std::vector<std::shared_ptr<Entry>> live;
    {
        std::lock_guard lock(m_mutex);
        for (const auto& [id, e] : m_live) live.push_back(e);
    }
    int n = 0;
    for (auto& e : live) {
        if (destroy_sandboxes) {
            finish(e, SandboxState::Deleted, "");
        } else {
            std::lock_guard lock(m_mutex);
            if (e->box) e->box->keep = true;
            e->box.reset();
        }
        ++n;
    }
    if (!destroy_sandboxes) {
        std::lock_guard lock(m_mutex);
        m_live.clear();
    }
    save_unsaved();  // a last try for what a store outage left unwritten
    if (m_config.spares) m_config.spares->discard();
    m_network_remover->wait_idle();  // the networks of the sandboxes ended above, and of earlier deletes
    log::info("sandboxes on shutdown", {{"count", n}, {"action", destroy_sandboxes ? "destroyed" : "kept"}});
}

}  // namespace kiln::daemon
