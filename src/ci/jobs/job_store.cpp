// JobStore: CI's tables in kilnd's store, on either engine (see job_store.h).
#include "ci/jobs/job_store.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/db.h"
#include "base/db_table.h"
#include "ci/jobs/job_state.h"

namespace kiln::ci {

using nlohmann::json;

std::optional<JobState> parse_job_state(std::string_view name) {
    for (JobState s : {JobState::Queued, JobState::Running, JobState::Passed, JobState::Failed, JobState::Error,
                       JobState::Cancelled, JobState::Waiting, JobState::Skipped})
        if (name == job_state_name(s)) return s;
    return std::nullopt;
}

std::optional<PipelineState> parse_pipeline_state(std::string_view name) {
    for (PipelineState s : {PipelineState::Queued, PipelineState::Running, PipelineState::Passed, PipelineState::Failed,
                            PipelineState::Error, PipelineState::Cancelled})
        if (name == pipeline_state_name(s)) return s;
    return std::nullopt;
}

namespace {

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
        a.push_back({{"name", s.name}, {"state", s.state}, {"exit_code", s.exit_code}, {"duration_ms", s.duration_ms},
                     {"started_at_ms", s.started_at_ms}, {"shard", s.shard}});
    return dump(a);
}

std::vector<StepRecord> parse_steps(const std::string& text) {
    std::vector<StepRecord> out;
    auto j = json::parse(text, nullptr, false);
    if (!j.is_array()) return out;
    for (const auto& e : j) {
        if (!e.is_object()) continue;
        out.push_back(StepRecord{e.value("name", ""), e.value("state", ""), e.value("exit_code", -1),
                                 e.value("duration_ms", int64_t(0)), e.value("started_at_ms", int64_t(0)),
                                 e.value("shard", -1)});
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

std::vector<std::string> parse_strings(const std::string& text) {
    std::vector<std::string> out;
    auto a = json::parse(text, nullptr, false);
    if (a.is_array())
        for (const auto& e : a)
            if (e.is_string()) out.push_back(e.get<std::string>());
    return out;
}

const DbTable<JobInfo>& jobs() {
    using J = JobInfo;
    static const DbTable<J> table(
        "ci_jobs",
        {column<J>("id", &J::id),
         column<J>("owner_token_id", &J::spec, &JobSpec::owner_token_id),
         // A state this kilnd does not know reads as error (the job cannot be resumed anyway).
         computed_column<J>("state", [](const J& j) { return std::string(job_state_name(j.state)); },
                            [](J& j, const std::string& v) { j.state = parse_job_state(v).value_or(JobState::Error); }),
         computed_column<J>("spec_json", [](const J& j) { return spec_json(j.spec); },
                            [](J& j, const std::string& v) {
                                int64_t owner = j.spec.owner_token_id;  // a column of its own
                                j.spec = parse_spec(v, owner);
                            }),
         column<J>("sha", &J::sha),
         column<J>("attempts", &J::attempts),
         column<J>("restarts", &J::restarts),
         column<J>("error", &J::error),
         column<J>("template_key", &J::template_key),
         column<J>("bake_hit", &J::bake_hit),
         computed_column<J>("steps_json", [](const J& j) { return steps_json(j.steps); },
                            [](J& j, const std::string& v) { j.steps = parse_steps(v); }),
         computed_column<J>("junit_json", [](const J& j) { return junit_json(j.junit); },
                            [](J& j, const std::string& v) { j.junit = parse_junit(v); }),
         computed_column<J>("artifacts_json", [](const J& j) { return dump(json(j.artifacts)); },
                            [](J& j, const std::string& v) { j.artifacts = parse_strings(v); }),
         column<J>("created_at_ms", &J::created_at_ms),
         column<J>("started_at_ms", &J::started_at_ms),
         column<J>("finished_at_ms", &J::finished_at_ms),
         column<J>("steps_ms", &J::steps_ms),
         column<J>("pipeline_id", &J::pipeline_id),
         column<J>("name", &J::name),
         computed_column<J>("needs_json", [](const J& j) { return dump(json(j.needs)); },
                            [](J& j, const std::string& v) { j.needs = parse_strings(v); }),
         column<J>("plan_index", &J::plan_index),
         // The spec's repo again, in a column of its own so pages can filter by it in SQL both
         // engines speak (migration 13); read after spec_json, which holds it too.
         column<J>("repo", &J::spec, &JobSpec::repo),
         column<J>("attempt", &J::attempt),
         column<J>("attempt_reason", &J::attempt_reason),
         // Written with the rest of the row only by the lease's holder (update_leased, whose WHERE
         // names it too) or by the transitions that set or clear it (claim, requeue).
         column<J>("lease_host", &J::host)});
    return table;
}

const DbTable<PipelineInfo>& pipelines() {
    using P = PipelineInfo;
    static const DbTable<P> table(
        "ci_pipelines",
        {column<P>("id", &P::id),
         column<P>("owner_token_id", &P::spec, &JobSpec::owner_token_id),
         // A state this kilnd does not know reads as error.
         computed_column<P>("state", [](const P& p) { return std::string(pipeline_state_name(p.state)); },
                            [](P& p, const std::string& v) { p.state = parse_pipeline_state(v).value_or(PipelineState::Error); }),
         computed_column<P>("spec_json", [](const P& p) { return spec_json(p.spec); },
                            [](P& p, const std::string& v) {
                                int64_t owner = p.spec.owner_token_id;
                                p.spec = parse_spec(v, owner);
                            }),
         column<P>("sha", &P::sha),
         column<P>("error", &P::error),
         column<P>("cancel_requested", &P::cancel_requested),
         column<P>("created_at_ms", &P::created_at_ms),
         column<P>("started_at_ms", &P::started_at_ms),
         column<P>("finished_at_ms", &P::finished_at_ms),
         column<P>("repo", &P::spec, &JobSpec::repo),
         column<P>("submit_key", &P::spec, &JobSpec::submit_key)});
    return table;
}

// Wakes every host's workers once the transaction commits (NOTIFY is delivered then; see
// kQueueChannel). SQLite has no other host to wake: the queue wakes its own workers in process.
Status notify_queue(const Db& owner, Db::Session& db) {
    switch (owner.engine()) {
        case DbEngine::Sqlite: return ok_status();
        case DbEngine::Postgres: return db.exec(std::string("NOTIFY ") + kQueueChannel);
    }
    return ok_status();
}

// A job's or a pipeline's row, by id, in a session (inside a transaction or not).
template <class Row>
Status write_row(Db::Session& db, const DbTable<Row>& table, const Row& row, bool insert) {
    auto st = TRY(db.prepare(insert ? table.insert() : table.update()));
    table.bind(st, row);
    return st.run();
}

// A bake's row: the entry and when it was made and last used (eviction goes by use).
struct BakeRow {
    BakeEntry entry;
    int64_t created_at_ms = 0;
    int64_t used_at_ms = 0;
};

const DbTable<BakeRow>& bakes() {
    using B = BakeRow;
    static const DbTable<B> table("ci_bake_cache", {column<B>("key", &B::entry, &BakeEntry::key),
                                                        column<B>("template", &B::entry, &BakeEntry::template_name),
                                                        column<B>("snapshot_id", &B::entry, &BakeEntry::snapshot_id),
                                                        column<B>("created_at_ms", &B::created_at_ms),
                                                        column<B>("used_at_ms", &B::used_at_ms),
                                                        column<B>("host", &B::entry, &BakeEntry::host)});
    return table;
}

template <class Row>
Result<std::vector<Row>> read_all(const DbTable<Row>& table, DbStatement& st) {
    std::vector<Row> out;
    while (TRY(st.step())) out.push_back(TRY(table.read(st)));
    return out;
}

}  // namespace

const Migrations& job_migrations() {
    // 2: the CI queue: jobs and the bake cache (template key -> snapshot). Written by the daemon's
    // list until each module declared its own; the SQL is as it shipped.
    static const Migrations list = {
        {2, R"sql(
CREATE TABLE ci_jobs (
  id TEXT PRIMARY KEY,
  owner_token_id INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL,
  spec_json TEXT NOT NULL,
  sha TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  template_key TEXT NOT NULL DEFAULT '',
  bake_hit INTEGER NOT NULL DEFAULT 0,
  steps_json TEXT NOT NULL DEFAULT '[]',
  junit_json TEXT NOT NULL DEFAULT '',
  artifacts_json TEXT NOT NULL DEFAULT '[]',
  created_at_ms INTEGER NOT NULL,
  started_at_ms INTEGER NOT NULL DEFAULT 0,
  finished_at_ms INTEGER NOT NULL DEFAULT 0,
  steps_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ci_jobs_state ON ci_jobs(state, created_at_ms);
CREATE TABLE ci_bake_cache (
  key TEXT PRIMARY KEY,
  template TEXT NOT NULL,
  snapshot_id TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  used_at_ms INTEGER NOT NULL
);
)sql"},
        // 8: how many kilnd restarts interrupted a job (one is retried, a second is final).
        {8, R"sql(
ALTER TABLE ci_jobs ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
)sql"},
        // 9: pipelines of several jobs (docs/pipeline.md). Each job names its pipeline, its name
        // in the plan, the jobs it needs and its place in the plan. A job from before becomes a
        // pipeline of one job: named `job`, or unnamed while still queued (the worker that claims
        // it plans it, as any new pipeline's first job).
        {9, R"sql(
CREATE TABLE ci_pipelines (
  id TEXT PRIMARY KEY,
  owner_token_id INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL,
  spec_json TEXT NOT NULL,
  sha TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL,
  started_at_ms INTEGER NOT NULL DEFAULT 0,
  finished_at_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ci_pipelines_created ON ci_pipelines(created_at_ms);
ALTER TABLE ci_jobs ADD COLUMN pipeline_id TEXT NOT NULL DEFAULT '';
ALTER TABLE ci_jobs ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE ci_jobs ADD COLUMN needs_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE ci_jobs ADD COLUMN plan_index INTEGER NOT NULL DEFAULT 0;
INSERT INTO ci_pipelines (id, owner_token_id, state, spec_json, sha, error, created_at_ms, started_at_ms, finished_at_ms)
  SELECT 'pipeline-' || substr(id, 5), owner_token_id, state, spec_json, sha, error, created_at_ms, started_at_ms,
         finished_at_ms FROM ci_jobs;
UPDATE ci_jobs SET pipeline_id = 'pipeline-' || substr(id, 5), name = CASE WHEN state = 'queued' THEN '' ELSE 'job' END;
CREATE INDEX ci_jobs_pipeline ON ci_jobs(pipeline_id, plan_index);
)sql"},
        // 13: `repo` in a column of its own (pages filter by it; json_extract is SQLite's only),
        // and `seq`, the order rows were inserted in (what SQLite's rowid gave; PostgreSQL has no
        // rowid): ties of created_at_ms go by it. SQLite numbers new rows by a trigger (a column
        // default cannot), PostgreSQL by an identity column: two texts.
        {13,
         R"sql(
ALTER TABLE ci_jobs ADD COLUMN repo TEXT NOT NULL DEFAULT '';
ALTER TABLE ci_pipelines ADD COLUMN repo TEXT NOT NULL DEFAULT '';
UPDATE ci_jobs SET repo = COALESCE(json_extract(spec_json, '$.repo'), '');
UPDATE ci_pipelines SET repo = COALESCE(json_extract(spec_json, '$.repo'), '');
ALTER TABLE ci_jobs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ci_pipelines ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE ci_jobs SET seq = rowid;
UPDATE ci_pipelines SET seq = rowid;
CREATE TRIGGER ci_jobs_seq AFTER INSERT ON ci_jobs WHEN NEW.seq = 0
  BEGIN UPDATE ci_jobs SET seq = NEW.rowid WHERE rowid = NEW.rowid; END;
CREATE TRIGGER ci_pipelines_seq AFTER INSERT ON ci_pipelines WHEN NEW.seq = 0
  BEGIN UPDATE ci_pipelines SET seq = NEW.rowid WHERE rowid = NEW.rowid; END;
CREATE INDEX ci_jobs_created_seq ON ci_jobs(created_at_ms, seq);
CREATE INDEX ci_pipelines_created_seq ON ci_pipelines(created_at_ms, seq);
)sql",
         R"sql(
ALTER TABLE ci_jobs ADD COLUMN repo TEXT NOT NULL DEFAULT '';
ALTER TABLE ci_pipelines ADD COLUMN repo TEXT NOT NULL DEFAULT '';
UPDATE ci_jobs SET repo = COALESCE(spec_json::json->>'repo', '');
UPDATE ci_pipelines SET repo = COALESCE(spec_json::json->>'repo', '');
ALTER TABLE ci_jobs ADD COLUMN seq BIGINT GENERATED BY DEFAULT AS IDENTITY;
ALTER TABLE ci_pipelines ADD COLUMN seq BIGINT GENERATED BY DEFAULT AS IDENTITY;
CREATE INDEX ci_jobs_created_seq ON ci_jobs(created_at_ms, seq);
CREATE INDEX ci_pipelines_created_seq ON ci_pipelines(created_at_ms, seq);
)sql"},
        // 12: several kilnd hosts on one store (docs/fleet.md). A running job is leased to the host
        // that claimed it (lease_host) until lease_expires_at_ms, which that host keeps moving;
        // any host re-queues a job whose lease expired, once: `attempt` 2, `attempt_reason` says
        // which host was lost. cancel_requested asks the host running a job to cancel it (a cancel
        // sent to another host). A pipeline's submit_key (a webhook's delivery) is unique: however
        // many hosts receive one delivery, one pipeline is inserted. The partial indexes keep a
        // claim and the lease sweep to the rows they want: without them PostgreSQL walks the
        // created_at order through every ended job to find the oldest queued one, and claims slow
        // down as the table grows (fleet_queue_bench: 100,000 jobs). Bakes become per host, keyed
        // (host, key): a bake's snapshot files are on the host that baked it, so every host bakes a
        // key for itself on first use (a table rebuilt: SQLite cannot change a primary key); the
        // rows from before have host "" until the first host to start claims them.
        {12, R"sql(
ALTER TABLE ci_jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE ci_jobs ADD COLUMN attempt_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE ci_jobs ADD COLUMN lease_host TEXT NOT NULL DEFAULT '';
ALTER TABLE ci_jobs ADD COLUMN lease_expires_at_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ci_jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
UPDATE ci_jobs SET attempt = restarts + 1;
ALTER TABLE ci_pipelines ADD COLUMN submit_key TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX ci_pipelines_submit_key ON ci_pipelines (submit_key) WHERE submit_key <> '';
CREATE INDEX ci_jobs_queued ON ci_jobs (created_at_ms) WHERE state = 'queued';
CREATE INDEX ci_jobs_lease_expiry ON ci_jobs (lease_expires_at_ms) WHERE state = 'running';
CREATE TABLE ci_bake_cache_hosts (
  host TEXT NOT NULL,
  key TEXT NOT NULL,
  template TEXT NOT NULL,
  snapshot_id TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  used_at_ms INTEGER NOT NULL,
  PRIMARY KEY (host, key)
);
INSERT INTO ci_bake_cache_hosts (host, key, template, snapshot_id, created_at_ms, used_at_ms)
  SELECT '', key, template, snapshot_id, created_at_ms, used_at_ms FROM ci_bake_cache;
DROP TABLE ci_bake_cache;
ALTER TABLE ci_bake_cache_hosts RENAME TO ci_bake_cache;
)sql"},
    };
    return list;
}

JobStore::JobStore(std::shared_ptr<Db> db) : m_db(std::move(db)) {}
JobStore::~JobStore() = default;

Result<std::unique_ptr<JobStore>> JobStore::open(std::shared_ptr<Db> db) {
    {
        // Fails clearly if the migrations that make the tables have not run (run, not only
        // prepared: PostgreSQL parses a statement when it is first stepped).
        auto s = db->session();
        TRY(TRY(s.prepare(jobs().select() + " LIMIT 0")).run());
        TRY(TRY(s.prepare(bakes().select() + " LIMIT 0")).run());
        TRY(TRY(s.prepare(pipelines().select() + " LIMIT 0")).run());
    }
    return std::unique_ptr<JobStore>(new JobStore(std::move(db)));
}

Status JobStore::insert(const JobInfo& j) {
    auto db = m_db->session();
    return write_row(db, jobs(), j, true);
}

Result<JobInfo> JobStore::insert_pipeline(const PipelineInfo& p, const JobInfo& first) {
    auto db = m_db->session();
    return db.transaction([&]() -> Result<JobInfo> {
        // ON CONFLICT DO NOTHING: a pipeline of the same submit_key is there already (unique index).
        auto st = TRY(db.prepare(pipelines().insert() + " ON CONFLICT DO NOTHING"));
        pipelines().bind(st, p);
        TRY(st.run());
        if (db.changes() == 1) {
            TRY(write_row(db, jobs(), first, true));
            TRY(notify_queue(*m_db, db));
            return first;
        }
        auto existing = TRY(db.prepare(jobs().select() + " WHERE pipeline_id = (SELECT id FROM ci_pipelines WHERE "
                                                         "submit_key = ?1 AND submit_key <> '') ORDER BY plan_index, seq"));
        existing.bind(1, p.spec.submit_key);
        if (!TRY(existing.step()))
            return make_error(ErrorCode::StoreFailed, "pipeline " + p.id + " was not inserted and no pipeline has its submit key");
        return jobs().read(existing);
    });
}

namespace {

// The pipeline's row, locked for the rest of the transaction (Session::for_update); empty if none.
Result<std::optional<PipelineInfo>> read_pipeline_locked(Db::Session& db, const std::string& id) {
    auto st = TRY(db.prepare(pipelines().select() + " WHERE id = ?1" + db.for_update()));
    st.bind(1, id);
    if (!TRY(st.step())) return std::optional<PipelineInfo>();
    return std::optional<PipelineInfo>(TRY(pipelines().read(st)));
}

Result<std::vector<JobInfo>> read_pipeline_jobs(Db::Session& db, const std::string& id) {
    auto js = TRY(db.prepare(jobs().select() + " WHERE pipeline_id = ?1 ORDER BY plan_index, seq"));
    js.bind(1, id);
    return read_all(jobs(), js);
}

// update_leased's statement, in a session: the row, only under the claim's lease.
Result<bool> write_leased(Db::Session& db, const JobInfo& j) {
    const int n = jobs().size();
    auto st = TRY(db.prepare(jobs().update() + " AND state = 'running' AND lease_host = ?" + std::to_string(n + 1) +
                             " AND attempts = ?" + std::to_string(n + 2)));
    jobs().bind(st, j);
    st.bind(n + 1, j.host).bind(n + 2, int64_t(j.attempts));
    TRY(st.run());
    return db.changes() == 1;
}

// A job's row, only if its state is still `was` (a change decided from a read that a claim or
// another host may have overtaken).
Result<bool> write_if_state(Db::Session& db, const JobInfo& j, JobState was) {
    const int n = jobs().size();
    auto st = TRY(db.prepare(jobs().update() + " AND state = ?" + std::to_string(n + 1)));
    jobs().bind(st, j);
    st.bind(n + 1, std::string_view(job_state_name(was)));
    TRY(st.run());
    return db.changes() == 1;
}

Status ask_cancel(Db::Session& db, const std::string& job_id) {
    auto st = TRY(db.prepare("UPDATE ci_jobs SET cancel_requested = 1 WHERE id = ?1 AND state = 'running'"));
    return st.bind(1, job_id).run();
}

}  // namespace

Result<bool> JobStore::save_plan(const std::string& pipeline_id, const std::string& sha, std::vector<JobInfo>& rows,
                                 const std::string& first_id, int64_t now_ms, PipelineInfo* saved) {
    auto db = m_db->session();
    return db.transaction([&]() -> Result<bool> {
        auto p = TRY(read_pipeline_locked(db, pipeline_id));
        if (!p) return make_error(ErrorCode::StoreFailed, "no pipeline " + pipeline_id);
        // Cancelled while this worker read the file (on this host or another): the other jobs never start.
        if (p->cancel_requested)
            for (auto& row : rows)
                if (row.id != first_id && !is_final(row.state)) {
                    row.state = JobState::Cancelled;
                    row.error = "cancelled with its pipeline before it started";
                    row.finished_at_ms = now_ms;
                }
        // The first job's row first, under its lease: a lost lease writes nothing of the plan.
        auto first = std::find_if(rows.begin(), rows.end(), [&](const JobInfo& r) { return r.id == first_id; });
        if (first == rows.end()) return make_error(ErrorCode::StoreFailed, "the plan has no row " + first_id);
        if (!TRY(write_leased(db, *first))) return false;
        for (const auto& row : rows)
            if (row.id != first_id) TRY(write_row(db, jobs(), row, true));
        if (std::any_of(rows.begin(), rows.end(), [](const JobInfo& r) { return r.state == JobState::Queued; }))
            TRY(notify_queue(*m_db, db));
        if (!is_final(p->state)) p->state = PipelineState::Running;
        p->sha = sha;
        if (p->started_at_ms == 0) p->started_at_ms = now_ms;
        TRY(write_row(db, pipelines(), *p, false));
        if (saved) *saved = std::move(*p);
        return true;
    });
}

Status JobStore::save_progress(const PipelineInfo& p, const std::vector<size_t>& changed_jobs) {
    auto db = m_db->session();
    return db.transaction([&]() -> Status {
        TRY(write_row(db, pipelines(), p, false));
        for (size_t i : changed_jobs)
            if (i < p.jobs.size()) TRY(write_row(db, jobs(), p.jobs[i], false));
        return ok_status();
    });
}

Result<std::optional<PipelineInfo>> JobStore::change_pipeline(const std::string& id,
                                                              const std::function<PipelineChange(PipelineInfo&)>& change,
                                                              PipelineChange* applied) {
    auto db = m_db->session();
    return db.transaction([&]() -> Result<std::optional<PipelineInfo>> {
        auto p = TRY(read_pipeline_locked(db, id));
        if (!p) return p;
        p->jobs = TRY(read_pipeline_jobs(db, id));
        const std::vector<JobInfo> before = p->jobs;
        PipelineChange wanted = change(*p);
        PipelineChange done;
        done.pipeline_changed = wanted.pipeline_changed;
        for (size_t i : wanted.changed_jobs) {
            if (i >= p->jobs.size()) continue;
            if (TRY(write_if_state(db, p->jobs[i], before[i].state))) {
                done.changed_jobs.push_back(i);
                continue;
            }
            // Changed since the read without the pipeline's lock: claimed by a host (a queued
            // job) or cancelled on its own (cancel_job). Its row as it is now stands.
            const bool wanted_cancel = p->jobs[i].state == JobState::Cancelled;
            auto now = TRY(db.prepare(jobs().select() + " WHERE id = ?1"));
            now.bind(1, p->jobs[i].id);
            p->jobs[i] = TRY(now.step()) ? TRY(jobs().read(now)) : before[i];
            if (wanted_cancel && p->jobs[i].state == JobState::Running) {
                TRY(ask_cancel(db, p->jobs[i].id));  // it runs now: the cancel reaches it through its lease
                done.cancel_running.push_back(i);
            }
        }
        for (size_t i : wanted.cancel_running)
            if (i < p->jobs.size()) {
                TRY(ask_cancel(db, p->jobs[i].id));
                done.cancel_running.push_back(i);
            }
        if (wanted.pipeline_changed) TRY(write_row(db, pipelines(), *p, false));
        for (size_t i : done.changed_jobs)
            if (p->jobs[i].state == JobState::Queued) {
                TRY(notify_queue(*m_db, db));
                break;
            }
        if (applied) *applied = std::move(done);
        return p;
    });
}

Result<std::optional<PipelineInfo>> JobStore::get_pipeline(const std::string& id) {
    auto db = m_db->session();
    auto st = TRY(db.prepare(pipelines().select() + " WHERE id = ?"));
    st.bind(1, id);
    if (!TRY(st.step())) return std::optional<PipelineInfo>();
    PipelineInfo p = TRY(pipelines().read(st));
    auto js = TRY(db.prepare(jobs().select() + " WHERE pipeline_id = ? ORDER BY plan_index, seq"));
    js.bind(1, id);
    p.jobs = TRY(read_all(jobs(), js));
    return std::optional<PipelineInfo>(std::move(p));
}

Result<std::vector<PipelineInfo>> JobStore::list_pipelines(int limit, int64_t owner_token_id) {
    std::vector<std::string> ids;
    {
        auto db = m_db->session();
        auto st = TRY(db.prepare("SELECT id FROM ci_pipelines WHERE (?2 = 0 OR owner_token_id = ?2) "
                                 "ORDER BY created_at_ms DESC, seq DESC LIMIT ?1"));
        st.bind(1, int64_t(limit));
        st.bind(2, owner_token_id);
        while (TRY(st.step())) ids.push_back(st.column_text(0));
    }
    std::vector<PipelineInfo> out;
    for (const auto& id : ids)
        if (auto p = TRY(get_pipeline(id))) out.push_back(std::move(*p));
    return out;
}

Result<std::vector<std::string>> JobStore::unfinished_pipelines() {
    auto db = m_db->session();
    auto st = TRY(db.prepare("SELECT id FROM ci_pipelines WHERE state IN ('queued', 'running') ORDER BY created_at_ms"));
    std::vector<std::string> out;
    while (TRY(st.step())) out.push_back(st.column_text(0));
    return out;
}

Status JobStore::update(const JobInfo& j) {
    auto db = m_db->session();
    auto st = TRY(db.prepare(jobs().update()));
    jobs().bind(st, j);
    return st.run();
}

Result<std::optional<JobInfo>> JobStore::get(const std::string& id) {
    auto db = m_db->session();
    auto st = TRY(db.prepare(jobs().select() + " WHERE id = ?"));
    st.bind(1, id);
    if (!TRY(st.step())) return std::optional<JobInfo>();
    return std::optional<JobInfo>(TRY(jobs().read(st)));
}

Result<std::vector<JobInfo>> JobStore::list(int limit, int64_t owner_token_id) {
    auto db = m_db->session();
    auto st = TRY(db.prepare(jobs().select() +
                             " WHERE (?2 = 0 OR owner_token_id = ?2) ORDER BY created_at_ms DESC, seq DESC LIMIT ?1"));
    st.bind(1, int64_t(limit));
    st.bind(2, owner_token_id);
    return read_all(jobs(), st);
}

namespace {
// The WHERE of a page over ci_jobs or ci_pipelines (both have these columns): ?1 limit, ?2 owner,
// ?3 state, ?4 repo, ?5 the id the page starts after.
std::string page_where(const char* table) {
    return std::string(" WHERE (?2 = 0 OR owner_token_id = ?2) AND (?3 = '' OR state = ?3)"
                       " AND (?4 = '' OR repo = ?4)"
                       " AND (?5 = '' OR (created_at_ms, seq) < (SELECT created_at_ms, seq FROM ") + table +
           " WHERE id = ?5)) ORDER BY created_at_ms DESC, seq DESC LIMIT ?1";
}
void bind_page(DbStatement& st, const ListPage& page) {
    st.bind(1, int64_t(std::clamp(page.limit, 1, 1001))).bind(2, page.owner_token_id).bind(3, page.state);
    st.bind(4, page.repo).bind(5, page.before_id);
}
}  // namespace

Result<std::vector<JobInfo>> JobStore::list_page(const ListPage& page) {
    auto db = m_db->session();
    auto st = TRY(db.prepare(jobs().select() + page_where("ci_jobs")));
    bind_page(st, page);
    return read_all(jobs(), st);
}

Result<std::vector<PipelineInfo>> JobStore::list_pipelines_page(const ListPage& page) {
    std::vector<std::string> ids;
    {
        auto db = m_db->session();
        auto st = TRY(db.prepare("SELECT id FROM ci_pipelines" + page_where("ci_pipelines")));
        bind_page(st, page);
        while (TRY(st.step())) ids.push_back(st.column_text(0));
    }
    std::vector<PipelineInfo> out;
    for (const auto& id : ids)
        if (auto p = TRY(get_pipeline(id))) out.push_back(std::move(*p));
    return out;
}

Result<int64_t> JobStore::count_unfinished(int64_t owner_token_id) {
    auto db = m_db->session();
    auto st = TRY(db.prepare("SELECT COUNT(*) FROM ci_jobs WHERE owner_token_id = ? AND state IN ('queued', 'running', 'waiting')"));
    st.bind(1, owner_token_id);
    if (!TRY(st.step())) return int64_t(0);
    return st.column_int(0);
}

Result<std::optional<JobInfo>> JobStore::claim_next(int64_t now_ms, const std::string& host, int64_t lease_ms) {
    auto db = m_db->session();
    return db.transaction([&]() -> Result<std::optional<JobInfo>> {
        auto sel = TRY(db.prepare(jobs().select() + " WHERE state = 'queued' ORDER BY created_at_ms, seq LIMIT 1" +
                                  db.for_update(true)));
        if (!TRY(sel.step())) return std::optional<JobInfo>();
        JobInfo j = TRY(jobs().read(sel));
        j.state = JobState::Running;
        j.attempts += 1;
        j.host = host;
        if (j.started_at_ms == 0) j.started_at_ms = now_ms;
        // Still queued: on PostgreSQL the row is locked already; the condition says so in SQL too.
        auto upd = TRY(db.prepare(jobs().update() + " AND state = 'queued'"));
        jobs().bind(upd, j);
        TRY(upd.run());
        if (db.changes() != 1) return std::optional<JobInfo>();
        auto lease = TRY(db.prepare("UPDATE ci_jobs SET lease_expires_at_ms = ?1, cancel_requested = 0 WHERE id = ?2"));
        TRY(lease.bind(1, lease_ms > 0 ? now_ms + lease_ms : int64_t(0)).bind(2, j.id).run());
        return std::optional<JobInfo>(std::move(j));
    });
}

Result<LeaseRenewal> JobStore::renew_lease(const JobInfo& job, int64_t now_ms, int64_t lease_ms) {
    auto db = m_db->session();
    auto st = TRY(db.prepare("UPDATE ci_jobs SET lease_expires_at_ms = ?1 WHERE id = ?2 AND state = 'running' AND "
                             "lease_host = ?3 AND attempts = ?4 RETURNING cancel_requested"));
    st.bind(1, now_ms + lease_ms).bind(2, job.id).bind(3, job.host).bind(4, int64_t(job.attempts));
    LeaseRenewal out;
    if (TRY(st.step())) {
        out.held = true;
        out.cancel_requested = st.column_int(0) != 0;
    }
    TRY(st.run());
    return out;
}

Result<bool> JobStore::update_leased(const JobInfo& job) {
    auto db = m_db->session();
    const bool written = TRY(write_leased(db, job));
    if (written && job.state == JobState::Queued) TRY(notify_queue(*m_db, db));  // a retry: any host may take it
    return written;
}

namespace {

// A running job interrupted (its kilnd restarted, or its host was lost): queued again as the next
// attempt with nothing of the interrupted one in its record (the next attempt fills steps, results
// and the bake in afresh; its log keeps both, marked), or, past `max_restarts`, ended as error.
void interrupt(JobInfo& j, int64_t now_ms, int max_restarts, const std::string& lost_host) {
    const int claim = j.attempts;
    const std::string where = j.host.empty() ? std::string("kilnd") : "host " + j.host;
    j.restarts += 1;
    if (j.restarts <= max_restarts) {
        j.state = JobState::Queued;
        j.attempt = j.restarts + 1;
        j.attempt_reason = "attempt " + std::to_string(j.attempt) + ": " +
                           (lost_host.empty() ? where + " restarted while attempt " + std::to_string(j.attempt - 1) + " ran"
                                              : "host " + lost_host + " lost (its lease expired while attempt " +
                                                    std::to_string(j.attempt - 1) + " ran)");
        j.host.clear();
        j.error.clear();
        j.template_key.clear();
        j.bake_hit = false;
        j.steps.clear();
        j.junit.reset();
        j.artifacts.clear();
        j.steps_ms = 0;
    } else {
        j.state = JobState::Error;
        j.finished_at_ms = now_ms;
        j.error = lost_host.empty()
                      ? "kilnd stopped (crash or kill) while the job ran, " + std::to_string(j.restarts) +
                            " times, the last in attempt " + std::to_string(claim) +
                            ": not run again (its VM was destroyed when kilnd restarted)"
                      : "host " + lost_host + " was lost (its lease expired) while the job ran, and the job had been "
                            "interrupted " + std::to_string(j.restarts - 1) + " time(s) before: not run again";
    }
}

}  // namespace

namespace {

// Writes an interrupted job (interrupt()) only if its claim is still the one read and its lease
// still the one that expired (`expires`; -1: any): a host that renewed it just now, or another
// host that re-queued it first, wins.
Result<bool> write_interrupted(Db::Session& db, const JobInfo& j, const std::string& held_by, int claim, int64_t expires) {
    const int n = jobs().size();
    // One statement per case (no "?N < 0 OR ..."): PostgreSQL types a parameter by its first use.
    auto st = TRY(db.prepare("UPDATE ci_jobs SET " + std::string("lease_expires_at_ms = 0, cancel_requested = 0, ") +
                             jobs().update().substr(std::string("UPDATE ci_jobs SET ").size()) +
                             " AND state = 'running' AND lease_host = ?" + std::to_string(n + 1) + " AND attempts = ?" +
                             std::to_string(n + 2) +
                             (expires >= 0 ? " AND lease_expires_at_ms = ?" + std::to_string(n + 3) : std::string())));
    jobs().bind(st, j);
    st.bind(n + 1, held_by).bind(n + 2, int64_t(claim));
    if (expires >= 0) st.bind(n + 3, expires);
    TRY(st.run());
    return db.changes() == 1;
}

}  // namespace

Result<std::vector<InterruptedJob>> JobStore::requeue_expired(int64_t now_ms, int max_restarts) {
    auto db = m_db->session();
    return db.transaction([&]() -> Result<std::vector<InterruptedJob>> {
        // A batch at a time; SKIP LOCKED: rows another host is re-queuing now are its own.
        auto sel = TRY(db.prepare("SELECT " + jobs().columns() +
                                  ", lease_expires_at_ms FROM ci_jobs WHERE state = 'running' AND lease_expires_at_ms > 0"
                                  " AND lease_expires_at_ms < ?1 ORDER BY lease_expires_at_ms, id LIMIT 100" +
                                  db.for_update(true)));
        sel.bind(1, now_ms);
        std::vector<std::pair<JobInfo, int64_t>> expired;
        while (TRY(sel.step())) expired.emplace_back(TRY(jobs().read(sel)), sel.column_int(jobs().size()));
        std::vector<InterruptedJob> out;
        for (auto& [j, expires] : expired) {
            const std::string lost = j.host.empty() ? std::string("(unnamed)") : j.host;
            const int claim = j.attempts;
            const std::string held_by = j.host;
            interrupt(j, now_ms, max_restarts, lost);
            if (!TRY(write_interrupted(db, j, held_by, claim, expires))) continue;
            const bool requeued = j.state == JobState::Queued;
            out.push_back(InterruptedJob{std::move(j), claim, requeued, lost});
        }
        if (std::any_of(out.begin(), out.end(), [](const InterruptedJob& i) { return i.requeued; }))
            TRY(notify_queue(*m_db, db));
        return out;
    });
}

Result<std::vector<InterruptedJob>> JobStore::recover_interrupted(int64_t now_ms, int max_restarts, const std::string& host) {
    auto db = m_db->session();
    return db.transaction([&]() -> Result<std::vector<InterruptedJob>> {
        auto sel = TRY(db.prepare(jobs().select() + " WHERE state = 'running' AND (lease_host = ?1 OR lease_host = '')" +
                                  " ORDER BY created_at_ms, seq" + db.for_update()));
        sel.bind(1, host);
        std::vector<JobInfo> running = TRY(read_all(jobs(), sel));
        std::vector<InterruptedJob> out;
        for (JobInfo& j : running) {
            const int claim = j.attempts;
            const std::string held_by = j.host;
            interrupt(j, now_ms, max_restarts, "");
            if (!TRY(write_interrupted(db, j, held_by, claim, -1))) continue;
            const bool requeued = j.state == JobState::Queued;
            out.push_back(InterruptedJob{std::move(j), claim, requeued, ""});
        }
        return out;
    });
}

Status JobStore::ping() {
    auto db = m_db->session();
    auto st = TRY(db.prepare("SELECT 1"));
    return st.run();
}

Result<std::optional<JobInfo>> JobStore::cancel_job(const std::string& id, const std::string& why, int64_t now_ms) {
    auto db = m_db->session();
    return db.transaction([&]() -> Result<std::optional<JobInfo>> {
        auto sel = TRY(db.prepare(jobs().select() + " WHERE id = ?1"));
        sel.bind(1, id);
        if (!TRY(sel.step())) return std::optional<JobInfo>();
        JobInfo j = TRY(jobs().read(sel));
        const JobState was = j.state;
        if (was == JobState::Queued || was == JobState::Waiting) {
            j.state = JobState::Cancelled;
            j.error = why;
            j.finished_at_ms = now_ms;
            if (TRY(write_if_state(db, j, was))) return std::optional<JobInfo>(std::move(j));
        }
        // Running (perhaps claimed since the read): its host sees the request at its next renewal.
        TRY(ask_cancel(db, id));
        return std::optional<JobInfo>();
    });
}

Result<std::vector<JobAge>> JobStore::job_ages() {
    auto db = m_db->session();
    auto st = TRY(db.prepare("SELECT id, spec_json, state, finished_at_ms FROM ci_jobs"));
    std::vector<JobAge> out;
    while (TRY(st.step())) {
        JobAge a;
        a.id = st.column_text(0);
        a.repo = parse_spec(st.column_text(1), 0).repo;
        // A state this kilnd does not know is final (as the jobs table reads it).
        a.finished = is_final(parse_job_state(st.column_text(2)).value_or(JobState::Error));
        a.finished_at_ms = st.column_int(3);
        out.push_back(std::move(a));
    }
    return out;
}

Result<std::vector<std::string>> JobStore::delete_finished_before(int64_t before_ms) {
    auto db = m_db->session();
    return db.transaction([&]() -> Result<std::vector<std::string>> {
        static constexpr const char* kWhere = " WHERE state NOT IN ('queued', 'running', 'waiting') AND finished_at_ms < ?";
        auto sel = TRY(db.prepare(std::string("SELECT id FROM ci_jobs") + kWhere));
        sel.bind(1, before_ms);
        std::vector<std::string> ids;
        while (TRY(sel.step())) ids.push_back(sel.column_text(0));
        auto del = TRY(db.prepare(std::string("DELETE FROM ci_jobs") + kWhere));
        TRY(del.bind(1, before_ms).run());
        // A pipeline goes with its last job.
        auto orphans = TRY(db.prepare("DELETE FROM ci_pipelines WHERE state NOT IN ('queued', 'running') AND "
                                      "NOT EXISTS (SELECT 1 FROM ci_jobs WHERE ci_jobs.pipeline_id = ci_pipelines.id)"));
        TRY(orphans.run());
        return ids;
    });
}

Result<std::optional<BakeEntry>> JobStore::find_bake(const std::string& host, const std::string& key, int64_t now_ms) {
    auto db = m_db->session();
    auto st = TRY(db.prepare(bakes().select() + " WHERE host = ? AND key = ?"));
    st.bind(1, host).bind(2, key);
    if (!TRY(st.step())) return std::optional<BakeEntry>();
    BakeEntry entry = TRY(bakes().read(st)).entry;
    auto touch = TRY(db.prepare("UPDATE ci_bake_cache SET used_at_ms = ? WHERE host = ? AND key = ?"));
    TRY(touch.bind(1, now_ms).bind(2, host).bind(3, key).run());
    return std::optional<BakeEntry>(std::move(entry));
}

Status JobStore::put_bake(const BakeEntry& e, int64_t now_ms) {
    auto db = m_db->session();
    // A rebake (the snapshot was gone) replaces the host's row for the key.
    auto st = TRY(db.prepare(bakes().insert() +
                             " ON CONFLICT (host, key) DO UPDATE SET template = excluded.template, snapshot_id = "
                             "excluded.snapshot_id, created_at_ms = excluded.created_at_ms, used_at_ms = excluded.used_at_ms"));
    bakes().bind(st, BakeRow{e, now_ms, now_ms});
    return st.run();
}

Status JobStore::drop_bake(const std::string& host, const std::string& key) {
    auto db = m_db->session();
    auto st = TRY(db.prepare("DELETE FROM ci_bake_cache WHERE host = ? AND key = ?"));
    return st.bind(1, host).bind(2, key).run();
}

Result<bool> JobStore::evict_bake(const BakeEntry& entry, int64_t used_before_ms) {
    auto db = m_db->session();
    auto st = TRY(db.prepare("DELETE FROM ci_bake_cache WHERE host = ? AND key = ? AND snapshot_id = ? AND used_at_ms < ?"));
    TRY(st.bind(1, entry.host).bind(2, entry.key).bind(3, entry.snapshot_id).bind(4, used_before_ms).run());
    return db.changes() == 1;
}

Result<int> JobStore::claim_unowned_bakes(const std::string& host) {
    auto db = m_db->session();
    return db.transaction([&]() -> Result<int> {
        // A key this host has a row for already keeps that row; the old one goes (its snapshot is
        // then a bake no row names, which collect_bakes deletes).
        auto taken = TRY(db.prepare("DELETE FROM ci_bake_cache WHERE host = '' AND key IN "
                                    "(SELECT key FROM ci_bake_cache WHERE host = ?1)"));
        TRY(taken.bind(1, host).run());
        auto st = TRY(db.prepare("UPDATE ci_bake_cache SET host = ?1 WHERE host = ''"));
        TRY(st.bind(1, host).run());
        return db.changes();
    });
}

Result<std::vector<BakeInfo>> JobStore::list_bakes(int limit) {
    auto db = m_db->session();
    // One pass over ci_jobs for the counts (bounded by retention), joined to the few bake rows.
    auto st = TRY(db.prepare(
        "SELECT b.key, b.template, b.snapshot_id, b.created_at_ms, b.used_at_ms, b.host, "
        "COALESCE(SUM(u.hits), 0), COALESCE(SUM(u.runs), 0) - COALESCE(SUM(u.hits), 0) FROM ci_bake_cache b LEFT JOIN "
        "(SELECT template_key, lease_host, SUM(bake_hit) AS hits, COUNT(*) AS runs FROM ci_jobs WHERE template_key != '' "
        "GROUP BY template_key, lease_host) u ON u.template_key = b.key AND u.lease_host IN (b.host, '') "
        "GROUP BY b.host, b.key, b.template, b.snapshot_id, b.created_at_ms, b.used_at_ms "
        "ORDER BY b.used_at_ms DESC, b.key, b.host LIMIT ?"));
    st.bind(1, static_cast<int64_t>(limit));
    std::vector<BakeInfo> out;
    while (TRY(st.step())) {
        BakeInfo b;
        b.key = st.column_text(0);
        b.template_name = st.column_text(1);
        b.snapshot_id = st.column_text(2);
        b.created_at_ms = st.column_int(3);
        b.used_at_ms = st.column_int(4);
        b.host = st.column_text(5);
        b.hits = st.column_int(6);
        b.misses = st.column_int(7);
        out.push_back(std::move(b));
    }
    return out;
}

Result<std::vector<std::string>> JobStore::baked_snapshot_ids() {
    auto db = m_db->session();
    auto st = TRY(db.prepare("SELECT snapshot_id FROM ci_bake_cache"));
    std::vector<std::string> out;
    while (TRY(st.step())) out.push_back(st.column_text(0));
    return out;
}

Result<std::vector<BakeEntry>> JobStore::bakes_to_evict(const std::string& host, int keep, int64_t used_before_ms) {
    auto db = m_db->session();
    // All the host's bakes but its `keep` most recently used (a LIMIT both engines take: neither's
    // "no limit" is the other's), then of those the ones unused since `used_before_ms`.
    auto st = TRY(db.prepare("SELECT " + bakes().columns() + " FROM (" + bakes().select() +
                             " WHERE host = ?3 ORDER BY used_at_ms DESC, key LIMIT 9223372036854775807 OFFSET ?1) AS older"
                             " WHERE used_at_ms < ?2 ORDER BY used_at_ms, key"));
    st.bind(1, static_cast<int64_t>(keep)).bind(2, used_before_ms).bind(3, host);
    std::vector<BakeEntry> out;
    for (auto& row : TRY(read_all(bakes(), st))) out.push_back(std::move(row.entry));
    return out;
}

}  // namespace kiln::ci
