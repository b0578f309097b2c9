// HostStore (see host_store.h).
#include "daemon/fleet/host_store.h"

#include <cctype>

#include <nlohmann/json.hpp>

namespace kiln::daemon {
namespace {

// What a dead host's live sandboxes say (the API's Sandbox.error); fencing looks for it too.
constexpr const char* kHostLost = "host lost";

}  // namespace

bool valid_host_name(const std::string& name) {
    if (name.empty() || name.size() > 63) return false;
    for (char c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
    return true;
}

Status HostStore::upsert(const HostSpec& spec, int64_t now_ms) {
    auto db = m_db->session();
    auto s = TRY(db.prepare(
        "INSERT INTO hosts (name, advertise_url, max_sandboxes, vcpus, max_memory_mib, accel, version, data_dir, "
        "started_at_ms, heartbeat_at_ms, stopped_at_ms, draining) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, 0, 0) "
        "ON CONFLICT (name) DO UPDATE SET advertise_url = excluded.advertise_url, max_sandboxes = excluded.max_sandboxes, "
        "vcpus = excluded.vcpus, max_memory_mib = excluded.max_memory_mib, accel = excluded.accel, "
        "version = excluded.version, data_dir = excluded.data_dir, started_at_ms = excluded.started_at_ms, "
        "heartbeat_at_ms = excluded.heartbeat_at_ms, stopped_at_ms = 0"));
    s.bind(1, spec.name).bind(2, spec.advertise_url).bind(3, spec.max_sandboxes).bind(4, spec.vcpus);
    s.bind(5, spec.max_memory_mib).bind(6, spec.accel).bind(7, spec.version).bind(8, spec.data_dir).bind(9, now_ms);
    return s.run();
}

Result<bool> HostStore::heartbeat(const std::string& name, int64_t now_ms) {
    auto db = m_db->session();
    auto s = TRY(db.prepare("UPDATE hosts SET heartbeat_at_ms = ?1 WHERE name = ?2"));
    s.bind(1, now_ms).bind(2, name);
    TRY(s.run());
    return db.changes() == 1;
}

Status HostStore::mark_stopped(const std::string& name, int64_t now_ms) {
    auto db = m_db->session();
    auto s = TRY(db.prepare("UPDATE hosts SET stopped_at_ms = ?1 WHERE name = ?2"));
    s.bind(1, now_ms).bind(2, name);
    return s.run();
}

Status HostStore::set_draining(const std::string& name, bool draining) {
    auto db = m_db->session();
    auto s = TRY(db.prepare("UPDATE hosts SET draining = ?1 WHERE name = ?2"));
    s.bind(1, int64_t(draining ? 1 : 0)).bind(2, name);
    TRY(s.run());
    if (db.changes() != 1) return make_error(ErrorCode::NotFound, "no host '" + name + "'");
    return ok_status();
}

Result<std::vector<HostRecord>> HostStore::list() {
    auto db = m_db->session();
    // The live counts in the same statement, so a host's row and its counts are one snapshot.
    auto s = TRY(db.prepare(
        "SELECT h.name, h.advertise_url, h.max_sandboxes, h.vcpus, h.max_memory_mib, h.accel, h.version, h.data_dir, "
        "h.started_at_ms, h.heartbeat_at_ms, h.stopped_at_ms, h.draining, COALESCE(l.n, 0), COALESCE(l.memory, 0) "
        "FROM hosts h LEFT JOIN (SELECT host, COUNT(*) AS n, SUM(memory_mib) AS memory FROM sandboxes "
        "WHERE state IN ('creating', 'running', 'pausing', 'resuming') GROUP BY host) l ON l.host = h.name ORDER BY h.name"));
    std::vector<HostRecord> out;
    while (TRY(s.step())) {
        HostRecord r;
        r.spec = HostSpec{s.column_text(0), s.column_text(1), s.column_int(2), s.column_int(3),
                          s.column_int(4),  s.column_text(5), s.column_text(6), s.column_text(7)};
        r.started_at_ms = s.column_int(8);
        r.heartbeat_at_ms = s.column_int(9);
        r.stopped_at_ms = s.column_int(10);
        r.draining = s.column_int(11) != 0;
        r.live_sandboxes = s.column_int(12);
        r.memory_mib_in_use = s.column_int(13);
        out.push_back(std::move(r));
    }
    return out;
}

Result<int> HostStore::claim_unowned(const std::string& name) {
    auto db = m_db->session();
    return db.transaction([&]() -> Result<int> {
        auto s = TRY(db.prepare("UPDATE sandboxes SET host = ?1 WHERE host = ''"));
        s.bind(1, name);
        TRY(s.run());
        int claimed = db.changes();
        auto snaps = TRY(db.prepare("UPDATE snapshots SET hosts_json = ?1 WHERE hosts_json = '[]'"));
        snaps.bind(1, nlohmann::json::array({name}).dump());
        TRY(snaps.run());
        return claimed;
    });
}

Result<std::vector<LostSandbox>> HostStore::end_sandboxes_of_dead_hosts(const std::string& self, int64_t dead_before_ms,
                                                                        int64_t now_ms) {
    static const std::string kDeadHosts =
        "host IN (SELECT name FROM hosts WHERE name <> ?1 AND (heartbeat_at_ms < ?2 OR stopped_at_ms > 0))";
    auto db = m_db->session();
    std::vector<LostSandbox> lost;
    // The state in the WHERE clause makes each row change once: a second host running the same
    // statement a moment later finds it lost already. RETURNING says which rows this one changed.
    auto s = TRY(db.prepare("UPDATE sandboxes SET state = 'lost', error = ?3, ended_at_ms = ?4, qemu_pid = 0 "
                            "WHERE state IN ('creating', 'running', 'pausing', 'resuming') AND " + kDeadHosts +
                            " RETURNING id, host"));
    s.bind(1, self).bind(2, dead_before_ms).bind(3, std::string(kHostLost)).bind(4, now_ms);
    while (TRY(s.step())) lost.push_back(LostSandbox{s.column_text(0), s.column_text(1)});
    // A delete the dead host had begun: its VM is gone with the host, so the delete is done.
    auto d = TRY(db.prepare("UPDATE sandboxes SET state = 'deleted', ended_at_ms = ?3, qemu_pid = 0 "
                            "WHERE state = 'deleting' AND " + kDeadHosts));
    d.bind(1, self).bind(2, dead_before_ms).bind(3, now_ms);
    TRY(d.run());
    return lost;
}

Result<std::vector<std::string>> HostStore::ended_elsewhere(const std::string& self, const std::vector<std::string>& live_ids) {
    std::vector<std::string> out;
    if (live_ids.empty()) return out;
    std::string marks;
    for (size_t i = 0; i < live_ids.size(); ++i) marks += (i ? ", ?" : "?") + std::to_string(i + 3);
    auto db = m_db->session();
    auto s = TRY(db.prepare("SELECT id FROM sandboxes WHERE host = ?1 AND state = 'lost' AND error = ?2 AND id IN (" +
                            marks + ")"));
    s.bind(1, self).bind(2, std::string(kHostLost));
    for (size_t i = 0; i < live_ids.size(); ++i) s.bind(static_cast<int>(i + 3), live_ids[i]);
    while (TRY(s.step())) out.push_back(s.column_text(0));
    return out;
}

Result<std::vector<std::string>> HostStore::hosts_that_ran(const std::string& template_id) {
    auto db = m_db->session();
    auto s = TRY(db.prepare("SELECT DISTINCT host FROM sandboxes WHERE template_id = ?1 AND host <> '' ORDER BY host"));
    s.bind(1, template_id);
    std::vector<std::string> out;
    while (TRY(s.step())) out.push_back(s.column_text(0));
    return out;
}

}  // namespace kiln::daemon
