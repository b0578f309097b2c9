// LocalSandboxService: the SandboxService of one host: VMs from src/vm, records in a Store,
// limits, the TTL reaper, snapshots, forks and templates.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <functional>

#include <nlohmann/json.hpp>

#include "daemon/disk_guard.h"
#include "daemon/data_dir.h"
#include "daemon/net/lazy_network_manager.h"
#include "daemon/net/network_remover.h"
#include "daemon/net/spare_networks.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "daemon/sandboxes/ttl_clock.h"
#include "daemon/store/store.h"
#include "daemon/templates/template_baker.h"
#include "vm/snapshot.h"
#include "vm/spare_pool.h"

namespace kiln::daemon {

struct ServiceConfig {
    std::string data_dir;             // absolute; VMs in data_dir/vms, snapshots in data_dir/snapshots
    int64_t max_sandboxes = 64;       // live (creating + running)
    int64_t max_memory_mib = 16384;   // committed by live sandboxes
    int64_t max_ttl_seconds = 86400;
    int64_t default_ttl_seconds = 600;
    // Restores of built-in templates and forks take and refill its spare QEMUs (kilnd's keep_spare);
    // null: every restore and fork starts its own QEMU. Outlives the service.
    vm::SparePool* spares = nullptr;
    // Networks of sandboxes with a NIC (null: every create that needs one is refused, unavailable).
    net::LazyNetworkManager* networks = nullptr;
    net::NetworkPolicy default_network;  // for creates that give none (mode none unless configured)
    // With `spares` and `networks`: creates with a NIC from a built-in take a spare QEMU whose
    // network was made ahead, and assign it their id and policy (docs/network.md). Null: such
    // creates make their network and start their QEMU on the create path. Outlives the service.
    net::SpareNetworks* spare_networks = nullptr;
    // How long a sandbox's guest has to take each frame sent to its agent; past it the guest is
    // deemed to have stopped reading and the sandbox ends lost (AgentClient::set_frame_send_timeout).
    Millis agent_send_timeout = vm::AgentClient::kDefaultFrameSendTimeout;
    // The operator's network_open_allow: the only private destinations a non-admin token's
    // allowlist may name (net::check_tenant_allowlist).
    std::vector<net::AllowRule> private_allow;
    // Creates, forks and snapshots ask it first (503 on a nearly full disk); null: no floor.
    // Outlives the service.
    const DiskGuard* disk = nullptr;
    // This kilnd's host_name: every sandbox it creates and every snapshot it takes names it.
    std::string host_name;
    // Asked by each create first (not by forks: a fork is its parent's host's running work):
    // an error (the host is draining: HostRegistry::check_accepting) refuses it. Empty: always.
    std::function<Status()> accepting;
    // TTLs: expires_at on the wall clock, the reaper's deadlines on the monotonic one (tests set
    // clocks that jump).
    TtlClock clock;
};

// What the service reports as it works; kilnd wires these to Metrics (metrics.h). Any may be empty.
struct ServiceHooks {
    std::function<void(double ms)> created;                  // a create or fork became running
    std::function<void(bool restore_failed)> create_failed;  // restore_failed: the VM layer refused
};

class LocalSandboxService final : public SandboxService {
public:
    // Starts the TTL reaper.
    LocalSandboxService(ServiceConfig config, Store& store, TemplateBaker& baker, ServiceHooks hooks = {});
    ~LocalSandboxService() override;  // shutdown(true) unless done

    Result<SandboxInfo> create(const Caller& caller, const CreateRequest& request) override;
    Result<SandboxInfo> get(const Caller& caller, const std::string& id) override;
    Result<std::vector<SandboxInfo>> list(const Caller& caller, const ListFilter& filter) override;
    Result<SandboxInfo> set_ttl(const Caller& caller, const std::string& id, int64_t ttl_seconds) override;
    Status remove(const Caller& caller, const std::string& id) override;
    Result<std::shared_ptr<SandboxLease>> lease(const Caller& caller, const std::string& id) override;
    Result<SandboxInfo> pause(const Caller& caller, const std::string& id) override;
    Result<SandboxInfo> resume(const Caller& caller, const std::string& id, std::optional<int64_t> ttl_seconds) override;

    Result<SnapshotInfo> snapshot(const Caller& caller, const std::string& id, const std::string& name) override;
    Result<SandboxInfo> fork(const Caller& caller, const std::string& id, const ForkRequest& request) override;

    Result<std::vector<SnapshotInfo>> list_snapshots(const Caller& caller) override;
    Result<SnapshotInfo> get_snapshot(const Caller& caller, const std::string& id) override;
    Status remove_snapshot(const Caller& caller, const std::string& id) override;

    Result<std::vector<TemplateInfo>> list_templates(const Caller& caller) override;
    Result<TemplateInfo> get_template(const Caller& caller, const std::string& id) override;
    Status remove_template(const Caller& caller, const std::string& id) override;

    std::map<std::string, int64_t> count_by_state() override;

    // Refuses new work (unavailable), waits for creates in flight, stops the reaper, then either
    // destroys every live sandbox (marked deleted) or leaves their QEMUs running (keep: the next
    // kilnd's reconcile finds them), then waits for the networks being removed in the background.
    // Idempotent.
    void shutdown(bool destroy_sandboxes);

    // Ids of the sandboxes whose VMs this service holds (creating and running).
    std::vector<std::string> live_ids();
    // Ends the VMs of these running sandboxes without writing their records: another host
    // already recorded them lost (this one was judged dead: HostRegistry's fencing).
    void fence(const std::vector<std::string>& ids);

    // The reaper's pass, public for tests: expires sandboxes past their TTL (on the monotonic
    // clock: ttl_clock.h), or pauses them (auto_pause, on a thread of their own), and marks dead
    // VMs lost.
    void reap_once();

    // Where this host keeps snapshot `id`'s files (data_dir/snapshots/<id>): the record's `dir` is
    // the path on the host that took it, and in a fleet a copy lives under each holder's own data
    // dir (docs/fleet.md).
    std::string snapshot_dir(const std::string& id) const { return daemon::snapshot_dir(m_config.data_dir, id); }

private:
    struct VmBox;
    struct Entry;
    class Lease;

    // What a create or fork is made from.
    struct Source {
        std::string template_id;
        std::string snapshot_dir;  // empty for a builtin not baked yet
        bool builtin = false;
        bool nic = false;          // a snapshot taken with a NIC restores only with one
        uint32_t vcpus = 1;
        uint32_t memory_mib = 256;
    };
    Result<Source> resolve_template(const Caller& caller, const std::string& template_id);
    Result<int64_t> checked_ttl(std::optional<int64_t> ttl_seconds) const;
    // Reserves a live slot (limits checked) and writes the record in state creating.
    Result<std::shared_ptr<Entry>> admit(const Caller& caller, SandboxRecord record);
    // The host's and the token's limits of live sandboxes, for one more of `memory_mib` (m_mutex held).
    Status check_room(const Caller& caller, uint32_t memory_mib) const;
    // Ends a live sandbox: kills its VM, drops it from the live set, records the final state.
    void finish(const std::shared_ptr<Entry>& entry, SandboxState final_state, const std::string& error);
    // A creating entry whose VM start failed (or was cancelled): record it, free the slot.
    Error fail_create(const std::shared_ptr<Entry>& entry, const Error& error, bool restore_failure);
    Result<SandboxInfo> become_running(const std::shared_ptr<Entry>& entry, std::unique_ptr<vm::Vm> vm,
                                       std::unique_ptr<net::SandboxNetwork> network, double create_ms,
                                       const nlohmann::json& log_fields);
    // Pause and resume (pause_resume.cpp, docs/pause.md). pause_entry: a pausing entry's VM saved
    // to its private snapshot and ended. A failed pause leaves the VM running if it can.
    Result<SandboxInfo> pause_entry(const std::shared_ptr<Entry>& entry);
    Error pause_failed(const std::shared_ptr<Entry>& entry, const std::shared_ptr<VmBox>& box, const Error& error);
    // A resuming entry whose restore failed: paused again (its snapshot is intact), or deleted if
    // a delete came meanwhile.
    Error resume_failed(const std::shared_ptr<Entry>& entry, const Error& error);
    // The reaper's auto_pause of an entry whose TTL ended (moved to pausing already): on a thread
    // of its own, counted in m_pauses_in_flight, which shutdown waits for.
    void pause_in_background(const std::shared_ptr<Entry>& entry);
    // A paused sandbox's delete: its record ends deleted, its snapshot goes (m_mutex held).
    Status remove_paused(SandboxRecord record);
    std::string paused_dir(const std::string& id) const { return daemon::paused_dir(m_config.data_dir, id); }
    // Memory and disk of a VM into request.dir (a VM with a NIC through a helper VM that has a
    // network of its own which lets nothing out, for the moment it runs).
    Result<vm::SnapshotManifest> save_vm(VmBox& box, const vm::SnapshotRequest& request, const std::string& what);
    // The namespace, tap, veth and rules of a sandbox with a NIC (see docs/network.md).
    Result<std::unique_ptr<net::SandboxNetwork>> setup_network(const std::string& id, const net::NetworkPolicy& policy);
    // Writes the record; a failure is logged and the record kept to be written again by the
    // reaper (a store that is down, say PostgreSQL restarting: the VM's state changed anyway, and
    // the store must catch up, not stay behind until the next start's reconcile).
    Status save(const SandboxRecord& record);
    void save_unsaved();  // the reaper's retry of what save() could not write
    Result<SandboxRecord> owned_record(const Caller& caller, const std::string& id);
    // Token quotas (docs/tenants.md): 429 quota_exceeded naming the quota.
    Status check_snapshot_quota(const Caller& caller);
    static Status check_lifetime(const Caller& caller, int64_t created_at_ms, int64_t expires_at_ms);
    void reaper_loop();

    const ServiceConfig m_config;
    Store& m_store;
    TemplateBaker& m_baker;
    const ServiceHooks m_hooks;

    std::mutex m_mutex;  // guards everything below, and the records inside m_live's entries
    std::condition_variable m_changed;
    std::map<std::string, std::shared_ptr<Entry>> m_live;  // creating and running sandboxes
    bool m_stopping = false;
    bool m_shut_down = false;
    int m_pauses_in_flight = 0;  // auto-pauses on their own threads (pause_in_background)
    std::thread m_reaper;
    // Records save() could not write, newest per sandbox. The mutex is held across the store call
    // in save() and save_unsaved(), so an older record never overwrites a newer one (taken after
    // m_mutex, never before it).
    std::mutex m_unsaved_mutex;
    std::map<std::string, SandboxRecord> m_unsaved;
    // Networks of ended sandboxes, removed off the caller's path (a DELETE does not wait for the
    // veth's removal). Shared with each VmBox, whose last holder may be a lease.
    const std::shared_ptr<net::NetworkRemover> m_network_remover = std::make_shared<net::NetworkRemover>();
};

}  // namespace kiln::daemon
