// HostStore: table `hosts` (migration 11) and the few statements about sandboxes that concern a
// whole host: what each host holds, claiming rows from before hosts existed, and ending the live
// sandboxes of hosts that stopped heartbeating. SQL in the dialect both engines take (docs/fleet.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/db.h"
#include "base/result.h"

namespace kiln::daemon {

// A host name is a key in the store, a path segment of /v1/hosts/{name} and a label in /metrics:
// 1-63 letters, digits, '.', '_' and '-'.
bool valid_host_name(const std::string& name);

// What a kilnd says about itself when it registers.
struct HostSpec {
    std::string name;           // config host_name
    std::string advertise_url;  // how the other hosts reach it (config advertise_url)
    int64_t max_sandboxes = 0;
    int64_t vcpus = 0;          // the machine's CPUs
    int64_t max_memory_mib = 0;
    std::string accel;          // kvm | tcg
    std::string version;
    std::string data_dir;       // two kilnds on one machine are told apart by it (shown, not used)
};

// A row of `hosts`, and what its sandboxes hold now.
struct HostRecord {
    HostSpec spec;
    int64_t started_at_ms = 0;
    int64_t heartbeat_at_ms = 0;
    int64_t stopped_at_ms = 0;  // a graceful stop; 0 while it runs (or since it restarted)
    bool draining = false;
    int64_t live_sandboxes = 0;  // creating + running sandboxes recorded on it
    int64_t memory_mib_in_use = 0;
};

// One sandbox a sweep ended, and whose it was.
struct LostSandbox {
    std::string id;
    std::string host;
};

// Thread-safe (the Db's Session serializes).
class HostStore {
public:
    explicit HostStore(std::shared_ptr<Db> db) : m_db(std::move(db)) {}

    // Inserts or replaces this host's row: started and heartbeat now, not stopped. `draining` is
    // kept from an earlier row (an operator's drain survives a restart).
    Status upsert(const HostSpec& spec, int64_t now_ms);
    // The heartbeat; false if the row is gone (someone deleted it: the caller registers again).
    Result<bool> heartbeat(const std::string& name, int64_t now_ms);
    Status mark_stopped(const std::string& name, int64_t now_ms);
    // NotFound if there is no such host.
    Status set_draining(const std::string& name, bool draining);
    // Every host, by name, with its live sandboxes counted.
    Result<std::vector<HostRecord>> list();
    // Rows from before migration 11 (host '') become this host's: its reconcile then sweeps them,
    // as a one-host kilnd did. The snapshots with no host listed are taken as held here. Returns
    // the number of sandboxes claimed.
    Result<int> claim_unowned(const std::string& name);
    // Every host other than `self` that stopped, or whose heartbeat is older than `dead_before_ms`:
    // its creating/running sandboxes become lost ("host lost") and its deleting ones deleted, in
    // one conditional UPDATE each, so that of several hosts noticing at once exactly one changes
    // each row. Returns the sandboxes this call marked lost.
    Result<std::vector<LostSandbox>> end_sandboxes_of_dead_hosts(const std::string& self, int64_t dead_before_ms,
                                                                 int64_t now_ms);
    // This host's sandboxes that the store says ended while this process may still hold their
    // VMs (another host judged it dead): the caller stops them (fencing).
    Result<std::vector<std::string>> ended_elsewhere(const std::string& self, const std::vector<std::string>& live_ids);
    // The hosts that have run a sandbox of `template_id` (any state), by name: each baked the
    // template on first use, so placement prefers them (a bake costs far more than a restore).
    Result<std::vector<std::string>> hosts_that_ran(const std::string& template_id);

private:
    std::shared_ptr<Db> m_db;
};

}  // namespace kiln::daemon
