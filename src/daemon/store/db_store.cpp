// DbStore: tokens, sandboxes and snapshots as rows of the store (see db_store.h). Each table's
// columns are listed once (DbTable); every statement's column list and binding comes from it.
#include "daemon/store/db_store.h"

#include <charconv>

#include <nlohmann/json.hpp>

#include "base/json_log.h"
#include "base/db_table.h"
#include "daemon/store/migrations.h"

namespace kiln::daemon {
namespace {

std::string labels_json(const Labels& labels) {
    nlohmann::json j = labels;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Labels parse_labels(const std::string& text) {
    Labels out;
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object()) return out;
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (it.value().is_string()) out[it.key()] = it.value().get<std::string>();
    }
    return out;
}

std::string host_list_json(const std::vector<std::string>& hosts) {
    nlohmann::json j = hosts;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Anything but a list of strings reads as no hosts (the snapshot is then found on none).
std::vector<std::string> parse_host_list(const std::string& text) {
    std::vector<std::string> out;
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_array()) return out;
    for (const auto& e : j)
        if (e.is_string()) out.push_back(e.get<std::string>());
    return out;
}

// A stored policy was valid when written; a row from before migration 3 (or damaged) reads as none.
net::NetworkPolicy parse_stored_policy(const std::string& text) {
    auto policy = net::parse_network_policy_text(text);
    return policy.ok() ? *policy : net::NetworkPolicy{};
}

// A state this kilnd does not know is refused, not guessed: the row is reported, never rewritten.
Status read_state(SandboxRecord& r, const std::string& text) {
    auto state = parse_state(text);
    if (!state) return make_error(ErrorCode::StoreFailed, "'" + text + "' is not a sandbox state");
    r.info = SandboxInfo::from_row(*state, std::move(r.info));
    return ok_status();
}

const DbTable<SandboxRecord>& sandboxes() {
    using R = SandboxRecord;
    using I = SandboxInfo;
    static const DbTable<R> table(
        "sandboxes",
        {column<R>("id", &R::info, &I::id),
         column<R>("owner_token_id", &R::info, &I::owner_token_id),
         computed_column<R>("state", [](const R& r) { return std::string(state_name(r.info.state())); }, read_state),
         column<R>("template_id", &R::info, &I::template_id),
         column<R>("created_at_ms", &R::info, &I::created_at_ms),
         column<R>("expires_at_ms", &R::info, &I::expires_at_ms),
         column<R>("ended_at_ms", &R::info, &I::ended_at_ms),
         computed_column<R>("metadata_json", [](const R& r) { return labels_json(r.info.metadata); },
                            [](R& r, const std::string& v) { r.info.metadata = parse_labels(v); }),
         computed_column<R>("env_json", [](const R& r) { return labels_json(r.info.env); },
                            [](R& r, const std::string& v) { r.info.env = parse_labels(v); }),
         column<R>("vcpus", &R::info, &I::vcpus),
         column<R>("memory_mib", &R::info, &I::memory_mib),
         column<R>("parent_id", &R::info, &I::parent_id),
         column<R>("error", &R::info, &I::error),
         column<R>("create_ms", &R::info, &I::create_ms),
         column<R>("qemu_pid", &R::info, &I::qemu_pid),
         column<R>("run_dir", &R::run_dir),
         computed_column<R>("network_json", [](const R& r) { return net::to_json(r.info.network).dump(); },
                            [](R& r, const std::string& v) { r.info.network = parse_stored_policy(v); }),
         column<R>("has_nic", &R::info, &I::has_nic),
         column<R>("host", &R::info, &I::host),
         column<R>("auto_pause", &R::info, &I::auto_pause),
         column<R>("paused_at_ms", &R::info, &I::paused_at_ms),
         column<R>("ttl_left_ms", &R::info, &I::ttl_left_ms),
         column<R>("paused_bytes", &R::info, &I::paused_bytes)});
    return table;
}

const DbTable<SnapshotRecord>& snapshots() {
    using R = SnapshotRecord;
    using I = SnapshotInfo;
    static const DbTable<R> table("snapshots", {column<R>("id", &R::info, &I::id),
                                                    column<R>("name", &R::info, &I::name),
                                                    column<R>("owner_token_id", &R::info, &I::owner_token_id),
                                                    column<R>("sandbox_id", &R::info, &I::sandbox_id),
                                                    column<R>("template_id", &R::info, &I::template_id),
                                                    column<R>("created_at_ms", &R::info, &I::created_at_ms),
                                                    column<R>("size_bytes", &R::info, &I::size_bytes),
                                                    column<R>("vcpus", &R::info, &I::vcpus),
                                                    column<R>("memory_mib", &R::info, &I::memory_mib),
                                                    column<R>("dir", &R::dir),
                                                    computed_column<R>("hosts_json", [](const R& r) { return host_list_json(r.info.hosts); },
                                                                       [](R& r, const std::string& v) { r.info.hosts = parse_host_list(v); })});
    return table;
}

// Scopes were valid when written; a name this kilnd does not know is refused, not dropped, so a
// downgrade never widens or narrows a token silently.
Status read_scopes(TokenRecord& r, const std::string& text) {
    auto scopes = parse_scope_list(text);
    if (!scopes.ok()) return make_error(ErrorCode::StoreFailed, "token " + std::to_string(r.id) + ": " + scopes.error().message);
    r.scopes = *scopes;
    return ok_status();
}

const DbTable<TokenRecord>& tokens() {
    using R = TokenRecord;
    static const DbTable<R> table("tokens",
                                      {column<R>("id", &R::id), column<R>("name", &R::name),
                                       column<R>("sha256", &R::sha256_hex), column<R>("created_at_ms", &R::created_at_ms),
                                       column<R>("revoked", &R::revoked),
                                       computed_column<R>("scopes", [](const R& r) { return scope_list(r.scopes); }, read_scopes),
                                       computed_column<R>("quota_json", [](const R& r) { return quota_json(r.quota); },
                                                          [](R& r, const std::string& v) { r.quota = parse_quota_json(v); })},
                                      DbTable<R>::Key::Generated);
    return table;
}

// A row that does not read back is logged where it is met, loudly, with what is wrong with it.
void log_unreadable(const Error& e) { log::error("store: unreadable row", {{"error", e.message}}); }

// One row (get): an unreadable one is the caller's error, naming the row.
template <class Row>
Result<std::optional<Row>> read_one(const DbTable<Row>& table, DbStatement& s) {
    if (!TRY(s.step())) return std::optional<Row>();
    auto row = table.read(s);
    if (!row.ok()) {
        log_unreadable(row.error());
        return std::move(row).error();
    }
    return std::optional<Row>(std::move(*row));
}

// Every row (list): an unreadable one is logged and skipped, so the others stay usable (and the
// row itself stays in the table untouched, for someone to look at).
template <class Row>
Result<std::vector<Row>> read_all(const DbTable<Row>& table, DbStatement& s) {
    std::vector<Row> out;
    while (TRY(s.step())) {
        auto row = table.read(s);
        if (row.ok()) out.push_back(std::move(*row));
        else log_unreadable(row.error());
    }
    return out;
}

}  // namespace

Result<std::unique_ptr<DbStore>> DbStore::open(const std::string& path) {
    auto db = TRY(Db::open(path));
    TRY(run_migrations(*db, {migrations()}));
    return std::make_unique<DbStore>(std::move(db));
}

void DbStore::close() { m_db->close(); }

Result<int64_t> DbStore::insert_token(const TokenSpec& spec, const std::string& sha256_hex, int64_t created_at_ms) {
    auto db = m_db->session();
    auto s = TRY(db.prepare(tokens().insert() + " RETURNING id"));
    tokens().bind(s, TokenRecord{0, spec.name, sha256_hex, created_at_ms, false, spec.scopes, spec.quota});
    if (!TRY(s.step())) return make_error(ErrorCode::StoreFailed, "insert into tokens returned no id");
    return s.column_int(0);
}

Result<std::optional<TokenRecord>> DbStore::find_token_by_hash(const std::string& sha256_hex) {
    auto db = m_db->session();
    auto s = TRY(db.prepare(tokens().select() + " WHERE sha256 = ?"));
    s.bind(1, sha256_hex);
    return read_one(tokens(), s);
}

Result<std::optional<TokenRecord>> DbStore::find_token_by_id(int64_t id) {
    auto db = m_db->session();
    auto s = TRY(db.prepare(tokens().select() + " WHERE id = ?"));
    s.bind(1, id);
    return read_one(tokens(), s);
}

Result<std::vector<TokenRecord>> DbStore::list_tokens() {
    auto db = m_db->session();
    auto s = TRY(db.prepare(tokens().select() + " ORDER BY id"));
    return read_all(tokens(), s);
}

Result<int> DbStore::revoke_token(const std::string& id_or_name) {
    auto db = m_db->session();
    int64_t id = 0;
    auto [end, ec] = std::from_chars(id_or_name.data(), id_or_name.data() + id_or_name.size(), id);
    bool numeric = ec == std::errc() && end == id_or_name.data() + id_or_name.size() && !id_or_name.empty();
    auto s = TRY(db.prepare(numeric ? "UPDATE tokens SET revoked = 1 WHERE id = ? AND revoked = 0"
                                    : "UPDATE tokens SET revoked = 1 WHERE name = ? AND revoked = 0"));
    if (numeric) s.bind(1, id);
    else s.bind(1, id_or_name);
    TRY(s.run());
    return db.changes();
}

Status DbStore::insert_sandbox(const SandboxRecord& record) {
    auto db = m_db->session();
    auto s = TRY(db.prepare(sandboxes().insert()));
    sandboxes().bind(s, record);
    return s.run();
}

Status DbStore::update_sandbox(const SandboxRecord& record) {
    auto db = m_db->session();
    auto s = TRY(db.prepare(sandboxes().update()));
    sandboxes().bind(s, record);
    TRY(s.run());
    if (db.changes() != 1) return make_error(ErrorCode::StoreFailed, "no sandbox record " + record.info.id);
    return ok_status();
}

Result<std::optional<SandboxRecord>> DbStore::get_sandbox(const std::string& id) {
    auto db = m_db->session();
    auto s = TRY(db.prepare(sandboxes().select() + " WHERE id = ?"));
    s.bind(1, id);
    return read_one(sandboxes(), s);
}

Result<std::vector<SandboxRecord>> DbStore::list_sandboxes(int64_t owner_token_id, bool live_only) {
    auto db = m_db->session();
    std::string sql = sandboxes().select() + " WHERE (?1 = 0 OR owner_token_id = ?1)";
    if (live_only) sql += " AND state IN ('creating', 'running', 'pausing', 'paused', 'resuming')";
    sql += " ORDER BY created_at_ms DESC, id DESC";
    auto s = TRY(db.prepare(sql));
    s.bind(1, owner_token_id);
    return read_all(sandboxes(), s);
}

Result<std::vector<SandboxRecord>> DbStore::list_host_sandboxes(const std::string& host) {
    auto db = m_db->session();
    auto s = TRY(db.prepare(sandboxes().select() + " WHERE host = ?1 ORDER BY created_at_ms DESC, id DESC"));
    s.bind(1, host);
    return read_all(sandboxes(), s);
}

Result<std::map<std::string, int64_t>> DbStore::count_sandboxes_by_state() {
    auto db = m_db->session();
    std::map<std::string, int64_t> out;
    for (auto st : kAllSandboxStates) out[state_name(st)] = 0;
    auto s = TRY(db.prepare("SELECT state, COUNT(*) FROM sandboxes GROUP BY state"));
    while (TRY(s.step())) {
        std::string state = s.column_text(0);
        if (out.count(state)) out[state] = s.column_int(1);
        else log_unreadable(make_error(ErrorCode::StoreFailed, "table sandboxes: " + std::to_string(s.column_int(1)) +
                                                                   " row(s) in state '" + state + "', which is not a sandbox state"));
    }
    return out;
}

Status DbStore::insert_snapshot(const SnapshotRecord& r) {
    auto db = m_db->session();
    auto s = TRY(db.prepare(snapshots().insert()));
    snapshots().bind(s, r);
    return s.run();
}

Result<std::optional<SnapshotRecord>> DbStore::get_snapshot(const std::string& id) {
    auto db = m_db->session();
    auto s = TRY(db.prepare(snapshots().select() + " WHERE id = ?"));
    s.bind(1, id);
    return read_one(snapshots(), s);
}

Result<std::vector<SnapshotRecord>> DbStore::list_snapshots(int64_t owner_token_id) {
    auto db = m_db->session();
    auto s = TRY(db.prepare(snapshots().select() + " WHERE (?1 = 0 OR owner_token_id = ?1) ORDER BY created_at_ms DESC, id DESC"));
    s.bind(1, owner_token_id);
    return read_all(snapshots(), s);
}

Status DbStore::delete_snapshot(const std::string& id) {
    auto db = m_db->session();
    auto s = TRY(db.prepare("DELETE FROM snapshots WHERE id = ?"));
    s.bind(1, id);
    return s.run();
}

Status DbStore::add_snapshot_host(const std::string& id, const std::string& host) {
    auto db = m_db->session();
    return db.transaction([&]() -> Status {
        // Locked (on PostgreSQL): two hosts copying at once must both end up listed.
        auto read = TRY(db.prepare("SELECT hosts_json FROM snapshots WHERE id = ?1" + db.for_update()));
        read.bind(1, id);
        if (!TRY(read.step())) return make_error(ErrorCode::NotFound, "no snapshot record " + id);
        auto hosts = parse_host_list(read.column_text(0));
        for (const auto& h : hosts)
            if (h == host) return ok_status();
        hosts.push_back(host);
        auto write = TRY(db.prepare("UPDATE snapshots SET hosts_json = ?1 WHERE id = ?2"));
        write.bind(1, host_list_json(hosts)).bind(2, id);
        return write.run();
    });
}

}  // namespace kiln::daemon
