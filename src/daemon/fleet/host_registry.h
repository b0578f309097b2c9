// HostRegistry: this kilnd as one host of a fleet (docs/fleet.md). It registers the host in the
// store at start, heartbeats it from a thread of its own, and on each beat ends the live sandboxes
// of any other host whose heartbeat is older than the timeout (they become lost: "host lost").
// It answers what placement and the API need: every host with its state and load, and whether
// this host is draining (no new sandboxes; running ones finish).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "daemon/fleet/host_store.h"

namespace kiln::daemon {

// alive: heartbeating, taking placements; draining: heartbeating, taking none; dead: no
// heartbeat within the timeout, or stopped (a graceful stop: dead at once, nothing waits for it).
enum class HostState { Alive, Draining, Dead };
const char* host_state_name(HostState state);

// A host as GET /v1/hosts and placement see it.
struct HostStatus {
    HostRecord record;
    HostState state = HostState::Dead;
    int64_t heartbeat_age_ms = 0;  // now - its last heartbeat (on this host's clock)
};

// The state of `record` at `now_ms` with `timeout_ms` (the rule, kept in one place).
HostState host_state(const HostRecord& record, int64_t now_ms, int64_t timeout_ms);

struct HostRegistryConfig {
    HostSpec self;
    Millis heartbeat{2000};  // host_heartbeat_seconds
    Millis timeout{15000};   // host_timeout_seconds
};

// What the registry asks of this host's sandboxes (kilnd wires them to LocalSandboxService).
struct HostRegistryHooks {
    // Ids of the sandboxes whose VMs this process holds.
    std::function<std::vector<std::string>()> live_ids;
    // Ends these sandboxes' VMs here: another host recorded them lost while this one was cut off
    // from the store (its heartbeats did not arrive), and nobody may reach them any more.
    std::function<void(const std::vector<std::string>&)> fence;
};

// Thread-safe.
class HostRegistry {
public:
    HostRegistry(std::shared_ptr<Db> db, HostRegistryConfig config, HostRegistryHooks hooks = {});
    ~HostRegistry();  // stop()

    // Writes this host's row (an operator's drain of it survives) and claims the rows from before
    // hosts existed (host ''). Before the reconcile, which then sees them as this host's.
    Status register_self();
    // The heartbeat thread (one beat at once, then every `heartbeat`).
    void start();
    // Stops the thread and records the graceful stop (the host is dead at once). Idempotent.
    void stop();
    // One beat: heartbeat, the sweep of dead hosts' sandboxes, fencing, the draining flag. Public
    // for tests; the thread calls it.
    void beat_once();

    const std::string& name() const { return m_config.self.name; }
    Millis timeout() const { return m_config.timeout; }
    // Every host by name with its state and live sandboxes: placement's input (the forward
    // helper) and GET /v1/hosts.
    Result<std::vector<HostStatus>> hosts();
    // NotFound for an unknown host.
    Result<HostStatus> host(const std::string& name);
    Status set_draining(const std::string& name, bool draining);
    // The hosts that have baked `template_id` (HostStore::hosts_that_ran): placement's preference.
    Result<std::vector<std::string>> hosts_that_ran(const std::string& template_id) { return m_store.hosts_that_ran(template_id); }
    // This host's drain flag as of its last beat (or its own set_draining, at once).
    bool draining() const { return m_draining.load(); }
    // Unavailable while this host is draining: what a create checks first.
    Status check_accepting() const;

private:
    void loop();

    HostStore m_store;
    const HostRegistryConfig m_config;
    const HostRegistryHooks m_hooks;
    std::atomic<bool> m_draining{false};
    // Since when this host's heartbeats have been landing without a failure (its register_self
    // counts); unset after a failed one. Only a host in contact with the store for a whole
    // timeout judges others: after a store outage every heartbeat is old, and the first host back
    // must not take the others, which were cut off just as it was, for dead.
    std::mutex m_contact_mutex;
    std::optional<Clock::time_point> m_contact_since;
    std::mutex m_mutex;  // guards m_stopping and the thread's start/stop
    std::condition_variable m_wake;
    bool m_stopping = false;
    bool m_stopped = false;
    std::thread m_thread;
};

}  // namespace kiln::daemon
