// HostRegistry (see host_registry.h).
#include "daemon/fleet/host_registry.h"

#include "base/json_log.h"

namespace kiln::daemon {

const char* host_state_name(HostState state) {
    switch (state) {
        case HostState::Alive: return "alive";
        case HostState::Draining: return "draining";
        case HostState::Dead: return "dead";
    }
    return "dead";
}

HostState host_state(const HostRecord& record, int64_t now_ms, int64_t timeout_ms) {
    if (record.stopped_at_ms > 0 || record.heartbeat_at_ms < now_ms - timeout_ms) return HostState::Dead;
    return record.draining ? HostState::Draining : HostState::Alive;
}

HostRegistry::HostRegistry(std::shared_ptr<Db> db, HostRegistryConfig config, HostRegistryHooks hooks)
    : m_store(std::move(db)), m_config(std::move(config)), m_hooks(std::move(hooks)) {}

HostRegistry::~HostRegistry() { stop(); }

Status HostRegistry::register_self() {
    TRY(m_store.upsert(m_config.self, now_unix_ms()));
    {
        std::lock_guard lock(m_contact_mutex);
        if (!m_contact_since) m_contact_since = Clock::now();
    }
    int claimed = TRY(m_store.claim_unowned(m_config.self.name));
    auto me = TRY(host(m_config.self.name));
    m_draining = me.record.draining;
    log::info("host registered", {{"host", m_config.self.name}, {"advertise_url", m_config.self.advertise_url},
                                  {"draining", me.record.draining}, {"claimed_sandboxes", claimed}});
    return ok_status();
}

void HostRegistry::start() {
    std::lock_guard lock(m_mutex);
    if (m_thread.joinable() || m_stopping) return;
    m_thread = std::thread([this] { loop(); });
}

void HostRegistry::stop() {
    {
        std::lock_guard lock(m_mutex);
        if (m_stopped) return;
        m_stopped = m_stopping = true;
    }
    m_wake.notify_all();
    if (m_thread.joinable()) m_thread.join();
    if (auto st = m_store.mark_stopped(m_config.self.name, now_unix_ms()); !st.ok())
        log::warn("host stop not recorded", {{"host", m_config.self.name}, {"error", st.error().message}});
}

void HostRegistry::loop() {
    std::unique_lock lock(m_mutex);
    while (!m_stopping) {
        lock.unlock();
        beat_once();
        lock.lock();
        m_wake.wait_for(lock, m_config.heartbeat, [this] { return m_stopping; });
    }
}

void HostRegistry::beat_once() {
    const std::string& self = m_config.self.name;
    const int64_t now = now_unix_ms();
    // 1. The heartbeat. A row that vanished (an operator deleted it) is written again.
    auto beat = m_store.heartbeat(self, now);
    bool in_contact_long_enough = false;
    {
        std::lock_guard lock(m_contact_mutex);
        if (!beat.ok()) {
            m_contact_since.reset();
        } else {
            if (!m_contact_since) m_contact_since = Clock::now();
            in_contact_long_enough = Clock::now() - *m_contact_since >= m_config.timeout;
        }
    }
    if (!beat.ok()) {
        // The store is unreachable: nothing else here can work either. Others will judge this
        // host dead after the timeout; fencing (3) ends its VMs once the store answers again.
        log::warn("host heartbeat failed", {{"host", self}, {"error", beat.error().message}});
        return;
    }
    if (!*beat) {
        if (auto st = m_store.upsert(m_config.self, now); !st.ok())
            log::warn("host registration failed", {{"host", self}, {"error", st.error().message}});
    }
    // 2. Other hosts' sandboxes, if those hosts are dead (and this one has been beating long
    //    enough to tell: see m_contact_since).
    auto lost = in_contact_long_enough ? m_store.end_sandboxes_of_dead_hosts(self, now - m_config.timeout.count(), now)
                                       : Result<std::vector<LostSandbox>>(std::vector<LostSandbox>{});
    if (!lost.ok()) {
        log::warn("dead host sweep failed", {{"error", lost.error().message}});
    } else if (!lost->empty()) {
        for (const auto& l : *lost) log::warn("sandbox lost with its host", {{"sandbox", l.id}, {"host", l.host}});
    }
    // 3. Fencing: this host's VMs that another host recorded lost (it judged this one dead).
    if (m_hooks.live_ids && m_hooks.fence) {
        auto fenced = m_store.ended_elsewhere(self, m_hooks.live_ids());
        if (!fenced.ok()) {
            log::warn("fencing check failed", {{"error", fenced.error().message}});
        } else if (!fenced->empty()) {
            log::error("this host was judged dead by another (its heartbeats did not reach the store): ending the VMs "
                       "it recorded lost",
                       {{"host", self}, {"sandboxes", *fenced}});
            m_hooks.fence(*fenced);
        }
    }
    // 4. The drain flag, which another host's API may have set.
    if (auto me = host(self); me.ok()) m_draining = me->record.draining;
}

Result<std::vector<HostStatus>> HostRegistry::hosts() {
    const int64_t now = now_unix_ms();
    std::vector<HostStatus> out;
    for (auto& r : TRY(m_store.list())) {
        HostStatus h;
        h.state = host_state(r, now, m_config.timeout.count());
        h.heartbeat_age_ms = now - r.heartbeat_at_ms;
        h.record = std::move(r);
        out.push_back(std::move(h));
    }
    return out;
}

Result<HostStatus> HostRegistry::host(const std::string& name) {
    for (auto& h : TRY(hosts()))
        if (h.record.spec.name == name) return std::move(h);
    return make_error(ErrorCode::NotFound, "no host '" + name + "'");
}

Status HostRegistry::set_draining(const std::string& name, bool draining) {
    TRY(m_store.set_draining(name, draining));
    if (name == m_config.self.name) m_draining = draining;
    log::info(draining ? "host draining" : "host undrained", {{"host", name}});
    return ok_status();
}

Status HostRegistry::check_accepting() const {
    if (m_draining.load())
        return make_error(ErrorCode::Unavailable, "host " + m_config.self.name + " is draining: it takes no new sandboxes");
    return ok_status();
}

}  // namespace kiln::daemon
