// parse_pipeline: the top level of a `.kiln.yml`: one job (a top-level `steps`) or `jobs:` (with a
// shared `env`), then the checks across jobs. Each job is read by read_job (job_reader.cpp).
#include "ci/pipeline/pipeline_parser.h"

#include <algorithm>
#include <utility>

#include "ci/pipeline/job_reader.h"
#include "ci/pipeline/pipeline_graph.h"
#include "ci/pipeline/schema_reader.h"
#include "ci/pipeline/yaml_tree.h"

namespace kiln::ci {
namespace {

using Kind = YamlNode::Kind;

const YamlNode* find_key(const YamlNode& map, const char* key) {
    for (const auto& entry : map.entries)
        if (entry.key.kind == Kind::Scalar && entry.key.scalar == key) return &entry.key;
    return nullptr;
}

class PipelineReader {
public:
    // Every problem, in the order of the file.
    PipelineParse run(std::string_view text) {
        PipelineParse out;
        YamlLoadResult loaded = load_yaml(text);
        if (!loaded.root) {
            out.issues.push_back(loaded.issue);
            return out;
        }
        Pipeline pipeline = read_root(*loaded.root);
        out.issues = std::move(m_reader.issues());
        std::stable_sort(out.issues.begin(), out.issues.end(),
                         [](const SourceIssue& a, const SourceIssue& b) {
                             return std::pair(a.line, a.column) < std::pair(b.line, b.column);
                         });
        if (out.issues.empty()) out.pipeline = std::move(pipeline);
        return out;
    }

private:
    Pipeline read_root(const YamlNode& root) {
        Pipeline pipeline;
        if (root.kind == Kind::Null) {
            m_reader.issue(root, "the file is empty; a pipeline needs `steps` (a single job) or `jobs`");
            return pipeline;
        }
        if (!m_reader.expect_kind(root, Kind::Map, "the top level", "a map (jobs, or template, steps, …)")) return pipeline;
        if (find_key(root, "jobs")) return read_jobs_form(root);
        JobDefinition job;
        job.name = kSingleJobName;
        read_job(m_reader, root, JobForm::TopLevel, "", job);
        pipeline.jobs.push_back(std::move(job));
        return pipeline;
    }

    // With `jobs:`, the top level holds only `jobs` and the `env` every job shares.
    Pipeline read_jobs_form(const YamlNode& root) {
        Pipeline pipeline;
        auto misplaced = [](const std::string& where, const std::string& key) -> std::string {
            if (key == "steps")
                return "`steps` and `jobs` cannot both be at the top level: with `jobs`, each job has its own `steps`";
            static const std::vector<std::string> job_keys = {
                "template", "bake", "secrets", "junit", "artifacts", "timeout_seconds", "needs", "matrix", "parallel",
                "fork_after"};
            if (std::find(job_keys.begin(), job_keys.end(), key) != job_keys.end())
                return "`" + where + "` belongs inside a job: with `jobs`, the top level holds only `jobs` and `env`";
            return "unknown key `" + where + "`; with `jobs`, the top level holds only `jobs` and `env`";
        };
        std::map<std::string, std::string> shared_env;
        const YamlNode* shared_env_node = nullptr;
        const YamlNode* jobs_node = nullptr;
        for (const auto& [key, value] : m_reader.keyed(root, "", {"jobs", "env"}, misplaced)) {
            if (key == "env") {
                shared_env = m_reader.env_value(*value, "env");
                shared_env_node = value;
            } else {
                jobs_node = value;
            }
        }
        if (!jobs_node) return pipeline;  // `jobs` was a duplicate key or so: already an error
        std::vector<JobSource> sources = read_jobs(*jobs_node, pipeline);
        if (shared_env_node) merge_shared_env(*shared_env_node, shared_env, pipeline, sources);
        check_needs(m_reader, pipeline.jobs, sources);
        check_plan(m_reader, pipeline, sources, *jobs_node);
        return pipeline;
    }

    std::vector<JobSource> read_jobs(const YamlNode& node, Pipeline& pipeline) {
        std::vector<JobSource> sources;
        if (!m_reader.expect_kind(node, Kind::Map, "jobs", "a map of job name: job")) return sources;
        if (!m_reader.count_within(node, "jobs", node.entries.size(), PipelineLimits::kMaxJobs, "job", "jobs"))
            return sources;
        std::map<std::string, int> first_line;
        for (const auto& [key, value] : node.entries) {
            if (key.kind != Kind::Scalar || !is_job_name(key.scalar)) {
                m_reader.issue(key, "jobs: `" + key.scalar + "` is not a job name (letters, digits, _ and -, starting "
                                    "with a letter or digit, at most " +
                                        std::to_string(PipelineLimits::kMaxJobNameBytes) + " bytes)");
                continue;
            }
            if (auto [it, fresh] = first_line.emplace(key.scalar, key.line); !fresh) {
                m_reader.issue(key, "jobs: a second job named `" + key.scalar + "` (the first is on line " +
                                        std::to_string(it->second) + ")");
                continue;
            }
            std::string path = "jobs." + key.scalar;
            JobDefinition job;
            job.name = key.scalar;
            JobSource source{&key, path, {}};  // problems of the job as a whole point at its name
            // A job that is not a map is still a job: the needs naming it are not errors too.
            if (m_reader.expect_kind(value, Kind::Map, path, "a map (steps, needs, matrix, …)")) {
                source = read_job(m_reader, value, JobForm::InJobs, path, job);
                source.at = &key;
            }
            pipeline.jobs.push_back(std::move(job));
            sources.push_back(std::move(source));
        }
        return sources;
    }

    // The top-level env goes under each job's own: a job's key wins.
    void merge_shared_env(const YamlNode& node, const std::map<std::string, std::string>& shared, Pipeline& pipeline,
                          const std::vector<JobSource>& sources) {
        for (std::size_t i = 0; i < pipeline.jobs.size(); ++i) {
            JobDefinition& job = pipeline.jobs[i];
            for (const auto& [name, value] : shared) {
                if (job.env.count(name)) continue;
                if (std::find(job.secrets.begin(), job.secrets.end(), name) != job.secrets.end()) {
                    m_reader.issue(node, "env." + name + " is also listed in " + sources[i].path +
                                             ".secrets; a secret's value comes from the server");
                    continue;
                }
                job.env.emplace(name, value);
            }
            if (job.env.size() > PipelineLimits::kMaxEnv)
                m_reader.issue(*sources[i].at, sources[i].path + ".env with the top-level env has " +
                                                   std::to_string(job.env.size()) + " variables; the limit is " +
                                                   std::to_string(PipelineLimits::kMaxEnv));
        }
    }

    SchemaReader m_reader;
};

}  // namespace

PipelineParse parse_pipeline_detailed(std::string_view text) { return PipelineReader().run(text); }

Result<Pipeline> parse_pipeline(std::string_view text) {
    PipelineParse parsed = parse_pipeline_detailed(text);
    if (parsed.pipeline) return std::move(*parsed.pipeline);
    std::string message;
    for (const SourceIssue& issue : parsed.issues) message += (message.empty() ? "" : "\n") + issue.to_string();
    return make_error(ErrorCode::InvalidPipeline, message);
}

}  // namespace kiln::ci
