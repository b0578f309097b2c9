// JobStore over SQLite (see job_store.h).
#include "ci/jobs/job_store.h"

#include <nlohmann/json.hpp>

#include "base/sqlite_db.h"
#include "ci/jobs/job_state.h"

namespace kiln::ci {

using nlohmann::json;

std::optional<JobState> parse_job_state(std::string_view name) {
    for (JobState s : {JobState::Queued, JobState::Running, JobState::Passed, JobState::Failed, JobState::Error,
                       JobState::Cancelled})
        if (name == job_state_name(s)) return s;
    return std::nullopt;
}

namespace {

constexpr const char* kColumns =
    "id, owner_token_id, state, spec_json, sha, attempts, error, template_key, bake_hit, steps_json, junit_json, "
    "artifacts_json, created_at_ms, started_at_ms, finished_at_ms, steps_ms";

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The spec without its secrets: values never reach the disk.
std::string spec_json(const JobSpec& s) {
    return dump(json{{"repo", s.repo}, {"sha", s.sha}, {"ref", s.ref}, {"trusted", s.trusted}, {"source", s.source},
                     {"labels", s.labels}});
}

JobSpec parse_spec(const std::string& text, int64_t owner) {
    JobSpec s;
    s.owner_token_id = owner;
    auto j = json::parse(text, nullptr, false);
    if (!j.is_object()) return s;
    s.repo = j.value("repo", "");
    s.sha = j.value("sha", "");
    s.ref = j.value("ref", "");
    s.trusted = j.value("trusted", true);
    s.source = j.value("source", "");
    if (j.contains("labels") && j["labels"].is_object())
        for (auto it = j["labels"].begin(); it != j["labels"].end(); ++it)
            if (it.value().is_string()) s.labels[it.key()] = it.value().get<std::string>();
    return s;
}

std::string steps_json(const std::vector<StepRecord>& steps) {
    json a = json::array();
    for (const auto& s : steps)
        a.push_back({{"name", s.name}, {"state", s.state}, {"exit_code", s.exit_code}, {"duration_ms", s.duration_ms}});
    return dump(a);
}

std::vector<StepRecord> parse_steps(const std::string& text) {
    std::vector<StepRecord> out;
    auto j = json::parse(text, nullptr, false);
    if (!j.is_array()) return out;
    for (const auto& e : j) {
        if (!e.is_object()) continue;
        out.push_back(StepRecord{e.value("name", ""), e.value("state", ""), e.value("exit_code", -1),
                                 e.value("duration_ms", int64_t(0))});
    }
    return out;
}

std::string junit_json(const std::optional<JunitTotals>& t) {
    if (!t) return "";
    return dump(json{{"tests", t->tests}, {"failures", t->failures}, {"errors", t->errors}, {"skipped", t->skipped}});
}

std::optional<JunitTotals> parse_junit(const std::string& text) {
    if (text.empty()) return std::nullopt;
    auto j = json::parse(text, nullptr, false);
    if (!j.is_object()) return std::nullopt;
    return JunitTotals{j.value("tests", int64_t(0)), j.value("failures", int64_t(0)), j.value("errors", int64_t(0)),
                       j.value("skipped", int64_t(0))};
}

JobInfo read_row(const SqliteStatement& st) {
    JobInfo j;
    j.id = st.column_text(0);
    j.spec = parse_spec(st.column_text(3), st.column_int(1));
    j.state = parse_job_state(st.column_text(2)).value_or(JobState::Error);
    j.sha = st.column_text(4);
    j.attempts = static_cast<int>(st.column_int(5));
    j.error = st.column_text(6);
    j.template_key = st.column_text(7);
    j.bake_hit = st.column_int(8) != 0;
    j.steps = parse_steps(st.column_text(9));
    j.junit = parse_junit(st.column_text(10));
    auto a = json::parse(st.column_text(11), nullptr, false);
    if (a.is_array())
        for (const auto& e : a)
            if (e.is_string()) j.artifacts.push_back(e.get<std::string>());
    j.created_at_ms = st.column_int(12);
    j.started_at_ms = st.column_int(13);
    j.finished_at_ms = st.column_int(14);
    j.steps_ms = st.column_int(15);
    return j;
}

}  // namespace

JobStore::JobStore(std::unique_ptr<SqliteDb> db) : m_db(std::move(db)) {}
JobStore::~JobStore() { close(); }

Result<std::unique_ptr<JobStore>> JobStore::open(const std::string& db_path) {
    auto db = TRY(SqliteDb::open(db_path));
    // Fails clearly if the migration that makes the tables has not run.
    TRY(db->prepare("SELECT id FROM ci_jobs LIMIT 0"));
    return std::unique_ptr<JobStore>(new JobStore(std::move(db)));
}

void JobStore::close() {
    std::lock_guard lock(m_mutex);
    if (m_db) m_db->close();
}

Status JobStore::insert(const JobInfo& j) {
    std::lock_guard lock(m_mutex);
    auto st = TRY(m_db->prepare(std::string("INSERT INTO ci_jobs (") + kColumns +
                                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    st.bind(1, j.id).bind(2, j.spec.owner_token_id).bind(3, std::string(job_state_name(j.state)))
        .bind(4, spec_json(j.spec)).bind(5, j.sha).bind(6, int64_t(j.attempts)).bind(7, j.error)
        .bind(8, j.template_key).bind(9, int64_t(j.bake_hit)).bind(10, steps_json(j.steps)).bind(11, junit_json(j.junit))
        .bind(12, dump(json(j.artifacts))).bind(13, j.created_at_ms).bind(14, j.started_at_ms)
        .bind(15, j.finished_at_ms).bind(16, j.steps_ms);
    return st.run();
}

Status JobStore::update(const JobInfo& j) {
    std::lock_guard lock(m_mutex);
    auto st = TRY(m_db->prepare(
        "UPDATE ci_jobs SET state = ?, sha = ?, attempts = ?, error = ?, template_key = ?, bake_hit = ?, steps_json = ?, "
        "junit_json = ?, artifacts_json = ?, started_at_ms = ?, finished_at_ms = ?, steps_ms = ? WHERE id = ?"));
    st.bind(1, std::string(job_state_name(j.state))).bind(2, j.sha).bind(3, int64_t(j.attempts)).bind(4, j.error)
        .bind(5, j.template_key).bind(6, int64_t(j.bake_hit)).bind(7, steps_json(j.steps)).bind(8, junit_json(j.junit))
        .bind(9, dump(json(j.artifacts))).bind(10, j.started_at_ms).bind(11, j.finished_at_ms).bind(12, j.steps_ms)
        .bind(13, j.id);
    return st.run();
}

Result<std::optional<JobInfo>> JobStore::get(const std::string& id) {
    std::lock_guard lock(m_mutex);
    auto st = TRY(m_db->prepare(std::string("SELECT ") + kColumns + " FROM ci_jobs WHERE id = ?"));
    st.bind(1, id);
    if (!TRY(st.step())) return std::optional<JobInfo>();
    return std::optional<JobInfo>(read_row(st));
}

Result<std::vector<JobInfo>> JobStore::list(int limit) {
    std::lock_guard lock(m_mutex);
    auto st = TRY(m_db->prepare(std::string("SELECT ") + kColumns +
                                " FROM ci_jobs ORDER BY created_at_ms DESC, rowid DESC LIMIT ?"));
    st.bind(1, int64_t(limit));
    std::vector<JobInfo> out;
    while (TRY(st.step())) out.push_back(read_row(st));
    return out;
}

Result<std::optional<JobInfo>> JobStore::claim_next(int64_t now_ms) {
    std::lock_guard lock(m_mutex);
    TRY(m_db->exec("BEGIN IMMEDIATE"));
    auto body = [&]() -> Result<std::optional<JobInfo>> {
        auto sel = TRY(m_db->prepare(std::string("SELECT ") + kColumns +
                                     " FROM ci_jobs WHERE state = 'queued' ORDER BY created_at_ms, rowid LIMIT 1"));
        if (!TRY(sel.step())) return std::optional<JobInfo>();
        JobInfo j = read_row(sel);
        j.state = JobState::Running;
        j.attempts += 1;
        if (j.started_at_ms == 0) j.started_at_ms = now_ms;
        auto upd = TRY(m_db->prepare("UPDATE ci_jobs SET state = 'running', attempts = ?, started_at_ms = ? WHERE id = ?"));
        TRY(upd.bind(1, int64_t(j.attempts)).bind(2, j.started_at_ms).bind(3, j.id).run());
        return std::optional<JobInfo>(std::move(j));
    };
    auto result = body();
    if (!result.ok()) {
        (void)m_db->exec("ROLLBACK");
        return result;
    }
    TRY(m_db->exec("COMMIT"));
    return result;
}

Result<std::vector<std::string>> JobStore::fail_running(int64_t now_ms) {
    std::lock_guard lock(m_mutex);
    std::vector<std::string> ids;
    auto sel = TRY(m_db->prepare("SELECT id FROM ci_jobs WHERE state = 'running'"));
    while (TRY(sel.step())) ids.push_back(sel.column_text(0));
    auto upd = TRY(m_db->prepare(
        "UPDATE ci_jobs SET state = 'error', finished_at_ms = ?, "
        "error = 'kilnd stopped while the job ran (crash or kill); its VM was destroyed by the reconcile' "
        "WHERE state = 'running'"));
    TRY(upd.bind(1, now_ms).run());
    return ids;
}

Result<std::optional<BakeEntry>> JobStore::find_bake(const std::string& key, int64_t now_ms) {
    std::lock_guard lock(m_mutex);
    auto st = TRY(m_db->prepare("SELECT key, template, snapshot_id FROM ci_bake_cache WHERE key = ?"));
    st.bind(1, key);
    if (!TRY(st.step())) return std::optional<BakeEntry>();
    BakeEntry entry{st.column_text(0), st.column_text(1), st.column_text(2)};
    auto touch = TRY(m_db->prepare("UPDATE ci_bake_cache SET used_at_ms = ? WHERE key = ?"));
    TRY(touch.bind(1, now_ms).bind(2, key).run());
    return std::optional<BakeEntry>(std::move(entry));
}

Status JobStore::put_bake(const BakeEntry& e, int64_t now_ms) {
    std::lock_guard lock(m_mutex);
    auto st = TRY(m_db->prepare(
        "INSERT OR REPLACE INTO ci_bake_cache (key, template, snapshot_id, created_at_ms, used_at_ms) VALUES (?, ?, ?, ?, ?)"));
    return st.bind(1, e.key).bind(2, e.template_name).bind(3, e.snapshot_id).bind(4, now_ms).bind(5, now_ms).run();
}

Status JobStore::drop_bake(const std::string& key) {
    std::lock_guard lock(m_mutex);
    auto st = TRY(m_db->prepare("DELETE FROM ci_bake_cache WHERE key = ?"));
    return st.bind(1, key).run();
}

Result<bool> JobStore::evict_bake(const BakeEntry& entry, int64_t used_before_ms) {
    std::lock_guard lock(m_mutex);
    auto st = TRY(m_db->prepare("DELETE FROM ci_bake_cache WHERE key = ? AND snapshot_id = ? AND used_at_ms < ?"));
    TRY(st.bind(1, entry.key).bind(2, entry.snapshot_id).bind(3, used_before_ms).run());
    return m_db->changes() == 1;
}

Result<std::vector<std::string>> JobStore::baked_snapshot_ids() {
    std::lock_guard lock(m_mutex);
    auto st = TRY(m_db->prepare("SELECT snapshot_id FROM ci_bake_cache"));
    std::vector<std::string> out;
    while (TRY(st.step())) out.push_back(st.column_text(0));
    return out;
}

Result<std::vector<BakeEntry>> JobStore::bakes_to_evict(int keep, int64_t used_before_ms) {
    std::lock_guard lock(m_mutex);
    auto st = TRY(m_db->prepare(
        "SELECT key, template, snapshot_id FROM (SELECT key, template, snapshot_id, used_at_ms FROM ci_bake_cache "
        "ORDER BY used_at_ms DESC, key LIMIT -1 OFFSET ?) WHERE used_at_ms < ? ORDER BY used_at_ms, key"));
    st.bind(1, static_cast<int64_t>(keep)).bind(2, used_before_ms);
    std::vector<BakeEntry> out;
    while (TRY(st.step())) out.push_back(BakeEntry{st.column_text(0), st.column_text(1), st.column_text(2)});
    return out;
}

}  // namespace kiln::ci
