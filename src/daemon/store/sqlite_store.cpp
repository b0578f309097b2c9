// SqliteStore: tokens, sandboxes and snapshots as SQLite rows (see sqlite_store.h).
#include "daemon/store/sqlite_store.h"

#include <charconv>

#include <nlohmann/json.hpp>

#include "daemon/store/migrations.h"

namespace kiln::daemon {
namespace {

constexpr const char* kSandboxColumns =
    "id, owner_token_id, state, template_id, created_at_ms, expires_at_ms, ended_at_ms, metadata_json, env_json, "
    "vcpus, memory_mib, parent_id, error, create_ms, qemu_pid, run_dir, network_json, has_nic";

constexpr const char* kSnapshotColumns =
    "id, name, owner_token_id, sandbox_id, template_id, created_at_ms, size_bytes, vcpus, memory_mib, dir";

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

// Binds every sandbox column in kSandboxColumns order, from index 1.
void bind_sandbox(SqliteStatement& s, const SandboxRecord& r) {
    const SandboxInfo& i = r.info;
    s.bind(1, i.id).bind(2, i.owner_token_id).bind(3, std::string_view(state_name(i.state))).bind(4, i.template_id);
    s.bind(5, i.created_at_ms).bind(6, i.expires_at_ms).bind(7, i.ended_at_ms);
    s.bind(8, labels_json(i.metadata)).bind(9, labels_json(i.env));
    s.bind(10, int64_t(i.vcpus)).bind(11, int64_t(i.memory_mib)).bind(12, i.parent_id).bind(13, i.error);
    s.bind(14, i.create_ms).bind(15, int64_t(i.qemu_pid)).bind(16, r.run_dir);
    s.bind(17, net::to_json(i.network).dump()).bind(18, int64_t(i.has_nic ? 1 : 0));
}

// A stored policy was valid when written; a row from before migration 3 (or damaged) reads as none.
net::NetworkPolicy parse_stored_policy(const std::string& text) {
    auto policy = net::parse_network_policy_text(text);
    return policy.ok() ? *policy : net::NetworkPolicy{};
}

SandboxRecord read_sandbox(const SqliteStatement& s) {
    SandboxRecord r;
    SandboxInfo& i = r.info;
    i.id = s.column_text(0);
    i.owner_token_id = s.column_int(1);
    i.state = parse_state(s.column_text(2)).value_or(SandboxState::Lost);
    i.template_id = s.column_text(3);
    i.created_at_ms = s.column_int(4);
    i.expires_at_ms = s.column_int(5);
    i.ended_at_ms = s.column_int(6);
    i.metadata = parse_labels(s.column_text(7));
    i.env = parse_labels(s.column_text(8));
    i.vcpus = static_cast<uint32_t>(s.column_int(9));
    i.memory_mib = static_cast<uint32_t>(s.column_int(10));
    i.parent_id = s.column_text(11);
    i.error = s.column_text(12);
    i.create_ms = s.column_double(13);
    i.qemu_pid = static_cast<pid_t>(s.column_int(14));
    r.run_dir = s.column_text(15);
    i.network = parse_stored_policy(s.column_text(16));
    i.has_nic = s.column_int(17) != 0;
    return r;
}

SnapshotRecord read_snapshot(const SqliteStatement& s) {
    SnapshotRecord r;
    r.info.id = s.column_text(0);
    r.info.name = s.column_text(1);
    r.info.owner_token_id = s.column_int(2);
    r.info.sandbox_id = s.column_text(3);
    r.info.template_id = s.column_text(4);
    r.info.created_at_ms = s.column_int(5);
    r.info.size_bytes = static_cast<uint64_t>(s.column_int(6));
    r.info.vcpus = static_cast<uint32_t>(s.column_int(7));
    r.info.memory_mib = static_cast<uint32_t>(s.column_int(8));
    r.dir = s.column_text(9);
    return r;
}

TokenRecord read_token(const SqliteStatement& s) {
    return TokenRecord{s.column_int(0), s.column_text(1), s.column_text(2), s.column_int(3), s.column_int(4) != 0};
}

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path) {
    auto db = TRY(SqliteDb::open(path));
    TRY(migrate(*db));
    return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(db)));
}

void SqliteStore::close() {
    std::lock_guard lock(m_mutex);
    if (m_db) m_db->close();
}

Result<int64_t> SqliteStore::insert_token(const std::string& name, const std::string& sha256_hex, int64_t created_at_ms) {
    std::lock_guard lock(m_mutex);
    auto s = TRY(m_db->prepare("INSERT INTO tokens(name, sha256, created_at_ms) VALUES (?, ?, ?)"));
    TRY(s.bind(1, name).bind(2, sha256_hex).bind(3, created_at_ms).run());
    return m_db->last_insert_rowid();
}

Result<std::optional<TokenRecord>> SqliteStore::find_token_by_hash(const std::string& sha256_hex) {
    std::lock_guard lock(m_mutex);
    auto s = TRY(m_db->prepare("SELECT id, name, sha256, created_at_ms, revoked FROM tokens WHERE sha256 = ?"));
    s.bind(1, sha256_hex);
    if (!TRY(s.step())) return std::optional<TokenRecord>();
    return std::optional<TokenRecord>(read_token(s));
}

Result<std::vector<TokenRecord>> SqliteStore::list_tokens() {
    std::lock_guard lock(m_mutex);
    auto s = TRY(m_db->prepare("SELECT id, name, sha256, created_at_ms, revoked FROM tokens ORDER BY id"));
    std::vector<TokenRecord> out;
    while (TRY(s.step())) out.push_back(read_token(s));
    return out;
}

Result<int> SqliteStore::revoke_token(const std::string& id_or_name) {
    std::lock_guard lock(m_mutex);
    int64_t id = 0;
    auto [end, ec] = std::from_chars(id_or_name.data(), id_or_name.data() + id_or_name.size(), id);
    bool numeric = ec == std::errc() && end == id_or_name.data() + id_or_name.size() && !id_or_name.empty();
    auto s = TRY(m_db->prepare(numeric ? "UPDATE tokens SET revoked = 1 WHERE id = ? AND revoked = 0"
                                       : "UPDATE tokens SET revoked = 1 WHERE name = ? AND revoked = 0"));
    if (numeric) s.bind(1, id);
    else s.bind(1, id_or_name);
    TRY(s.run());
    return m_db->changes();
}

Status SqliteStore::insert_sandbox(const SandboxRecord& record) {
    std::lock_guard lock(m_mutex);
    auto s = TRY(m_db->prepare(std::string("INSERT INTO sandboxes(") + kSandboxColumns +
                               ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
    bind_sandbox(s, record);
    return s.run();
}

Status SqliteStore::update_sandbox(const SandboxRecord& record) {
    std::lock_guard lock(m_mutex);
    // The columns in the same order as kSandboxColumns; ?1 (the id) doubles as the WHERE.
    auto s = TRY(m_db->prepare(
        "UPDATE sandboxes SET id = ?1, owner_token_id = ?2, state = ?3, template_id = ?4, created_at_ms = ?5, "
        "expires_at_ms = ?6, ended_at_ms = ?7, metadata_json = ?8, env_json = ?9, vcpus = ?10, memory_mib = ?11, "
        "parent_id = ?12, error = ?13, create_ms = ?14, qemu_pid = ?15, run_dir = ?16, network_json = ?17, has_nic = ?18 "
        "WHERE id = ?1"));
    bind_sandbox(s, record);
    TRY(s.run());
    if (m_db->changes() != 1) return make_error(ErrorCode::StoreFailed, "no sandbox record " + record.info.id);
    return ok_status();
}

Result<std::optional<SandboxRecord>> SqliteStore::get_sandbox(const std::string& id) {
    std::lock_guard lock(m_mutex);
    auto s = TRY(m_db->prepare(std::string("SELECT ") + kSandboxColumns + " FROM sandboxes WHERE id = ?"));
    s.bind(1, id);
    if (!TRY(s.step())) return std::optional<SandboxRecord>();
    return std::optional<SandboxRecord>(read_sandbox(s));
}

Result<std::vector<SandboxRecord>> SqliteStore::list_sandboxes(int64_t owner_token_id, bool live_only) {
    std::lock_guard lock(m_mutex);
    std::string sql = std::string("SELECT ") + kSandboxColumns + " FROM sandboxes WHERE (?1 = 0 OR owner_token_id = ?1)";
    if (live_only) sql += " AND state IN ('creating', 'running')";
    sql += " ORDER BY created_at_ms DESC, id DESC";
    auto s = TRY(m_db->prepare(sql));
    s.bind(1, owner_token_id);
    std::vector<SandboxRecord> out;
    while (TRY(s.step())) out.push_back(read_sandbox(s));
    return out;
}

Result<std::map<std::string, int64_t>> SqliteStore::count_sandboxes_by_state() {
    std::lock_guard lock(m_mutex);
    std::map<std::string, int64_t> out;
    for (auto st : {SandboxState::Creating, SandboxState::Running, SandboxState::Deleting, SandboxState::Deleted,
                    SandboxState::Expired, SandboxState::Lost, SandboxState::Failed})
        out[state_name(st)] = 0;
    auto s = TRY(m_db->prepare("SELECT state, COUNT(*) FROM sandboxes GROUP BY state"));
    while (TRY(s.step())) out[s.column_text(0)] = s.column_int(1);
    return out;
}

Status SqliteStore::insert_snapshot(const SnapshotRecord& r) {
    std::lock_guard lock(m_mutex);
    auto s = TRY(m_db->prepare(std::string("INSERT INTO snapshots(") + kSnapshotColumns + ") VALUES (?,?,?,?,?,?,?,?,?,?)"));
    s.bind(1, r.info.id).bind(2, r.info.name).bind(3, r.info.owner_token_id).bind(4, r.info.sandbox_id);
    s.bind(5, r.info.template_id).bind(6, r.info.created_at_ms).bind(7, int64_t(r.info.size_bytes));
    s.bind(8, int64_t(r.info.vcpus)).bind(9, int64_t(r.info.memory_mib)).bind(10, r.dir);
    return s.run();
}

Result<std::optional<SnapshotRecord>> SqliteStore::get_snapshot(const std::string& id) {
    std::lock_guard lock(m_mutex);
    auto s = TRY(m_db->prepare(std::string("SELECT ") + kSnapshotColumns + " FROM snapshots WHERE id = ?"));
    s.bind(1, id);
    if (!TRY(s.step())) return std::optional<SnapshotRecord>();
    return std::optional<SnapshotRecord>(read_snapshot(s));
}

Result<std::vector<SnapshotRecord>> SqliteStore::list_snapshots(int64_t owner_token_id) {
    std::lock_guard lock(m_mutex);
    auto s = TRY(m_db->prepare(std::string("SELECT ") + kSnapshotColumns +
                               " FROM snapshots WHERE (?1 = 0 OR owner_token_id = ?1) ORDER BY created_at_ms DESC, id DESC"));
    s.bind(1, owner_token_id);
    std::vector<SnapshotRecord> out;
    while (TRY(s.step())) out.push_back(read_snapshot(s));
    return out;
}

Status SqliteStore::delete_snapshot(const std::string& id) {
    std::lock_guard lock(m_mutex);
    auto s = TRY(m_db->prepare("DELETE FROM snapshots WHERE id = ?"));
    s.bind(1, id);
    return s.run();
}

}  // namespace kiln::daemon
