// read_job: a job's keys (template, bake, env, secrets, steps, junit, artifacts, timeout_seconds,
// and in `jobs:` needs, matrix, parallel, fork_after), each checked where it is written.
#include "ci/pipeline/job_reader.h"

#include <algorithm>

namespace kiln::ci {
namespace {

using Kind = YamlNode::Kind;

const std::vector<std::string> kJobKeys = {"template", "bake",  "env",           "secrets",
                                           "steps",    "junit", "artifacts",     "timeout_seconds"};
const std::vector<std::string> kPipelineKeys = {"needs", "matrix", "parallel", "fork_after"};

bool is_template_name(const std::string& s) {
    if (s.empty() || s.size() > 64 || s[0] == '.' || s[0] == '-' || s[0] == '_') return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    });
}

std::string matrix_value_problem(const std::string& value) {
    if (has_control_char(value, false)) return "must not contain control characters";
    // The planned job's name holds the value, and that name is a folder under /work/needs.
    if (value.find('/') != std::string::npos) return "must not contain `/`";
    return "";
}

class JobReader {
public:
    JobReader(SchemaReader& reader, JobForm form, std::string path, JobDefinition& job)
        : m_reader(reader), m_form(form), m_job(job) {
        m_source.path = std::move(path);
    }

    JobSource read(const YamlNode& node) {
        m_source.at = &node;
        const YamlNode* steps = nullptr;
        const YamlNode* fork_after = nullptr;
        bool parallel_valid = true;
        for (const auto& [key, value] : m_reader.keyed(node, m_source.path, known_keys(), unknown_key_message())) {
            const YamlNode& v = *value;
            std::string where = at(key);
            if (key == "template") {
                if (auto name = m_reader.string_value(v, where, 64)) {
                    if (is_template_name(*name)) m_job.template_name = *name;
                    else m_reader.issue(v, where + " must be a template name (lowercase letters, digits, ., _ and -)");
                }
            } else if (key == "bake") {
                read_bake(v);
            } else if (key == "env") {
                m_job.env = m_reader.env_value(v, where);
            } else if (key == "secrets") {
                m_job.secrets = m_reader.string_list(
                    v, where, PipelineLimits::kMaxSecrets, PipelineLimits::kMaxNameBytes,
                    [](const std::string& s) -> std::string {
                        return is_env_name(s) ? "" : "must be a variable name (letters, digits and _)";
                    });
            } else if (key == "steps") {
                steps = &v;
            } else if (key == "junit" || key == "artifacts") {
                auto globs = m_reader.string_list(v, where, PipelineLimits::kMaxGlobs, PipelineLimits::kMaxPathBytes,
                                                  relative_path_problem);
                (key == "junit" ? m_job.junit : m_job.artifacts) = std::move(globs);
            } else if (key == "timeout_seconds") {
                m_timeout = &v;
                if (auto seconds = m_reader.seconds_value(v, where)) m_job.timeout_seconds = *seconds;
            } else if (key == "needs") {
                read_needs(v);
            } else if (key == "matrix") {
                read_matrix(v);
            } else if (key == "parallel") {
                auto shards = m_reader.count_value(v, where, 1, PipelineLimits::kMaxParallel);
                parallel_valid = shards.has_value();
                if (shards) m_job.parallel = *shards;
            } else if (key == "fork_after") {
                fork_after = &v;
                if (auto step = m_reader.string_value(v, where, PipelineLimits::kMaxNameBytes)) m_job.fork_after = *step;
            }
        }
        for (const std::string& name : m_job.secrets) {
            if (m_job.env.count(name))
                m_reader.issue(node, at("env") + "." + name +
                                         " is also listed in secrets; a secret's value comes from the server");
        }
        if (!steps) {
            m_reader.issue(node, m_form == JobForm::TopLevel
                                     ? "`steps` is missing; a pipeline needs `steps` (a single job) or `jobs`"
                                     : "`" + at("steps") + "` is missing; a job needs at least one step");
            return std::move(m_source);
        }
        read_steps(*steps);
        if (fork_after && m_job.fork_after && parallel_valid) check_fork_after(*fork_after);
        return std::move(m_source);
    }

private:
    std::string at(const std::string& key) const { return field_path(m_source.path, key); }

    std::vector<std::string> known_keys() const {
        std::vector<std::string> keys = kJobKeys;
        if (m_form == JobForm::InJobs) keys.insert(keys.end(), kPipelineKeys.begin(), kPipelineKeys.end());
        return keys;
    }

    // In the one-job form, a key of `jobs:` entries is told where it belongs.
    SchemaReader::UnknownKeyMessage unknown_key_message() const {
        if (m_form == JobForm::InJobs) return {};
        return [](const std::string& where, const std::string& key) -> std::string {
            if (std::find(kPipelineKeys.begin(), kPipelineKeys.end(), key) != kPipelineKeys.end())
                return "`" + where + "` belongs to a job under `jobs:`; a file with a top-level `steps` is a single job";
            return "unknown key `" + where + "`; expected one of: " + join_names(kJobKeys) + ", jobs";
        };
    }

    void read_bake(const YamlNode& node) {
        std::string where = at("bake");
        if (!m_reader.expect_kind(node, Kind::Map, where, "a map (key_files, run)")) return;
        PipelineBake bake;
        bool has_run = false;
        for (const auto& [key, value] : m_reader.keyed(node, where, {"key_files", "run"})) {
            if (key == "run") {
                if (auto run = m_reader.string_value(*value, where + ".run", PipelineLimits::kMaxRunBytes)) bake.run = *run;
                has_run = true;
            } else {
                bake.key_files = m_reader.string_list(*value, where + ".key_files", PipelineLimits::kMaxKeyFiles,
                                                      PipelineLimits::kMaxPathBytes, [](const std::string& s) {
                                                          std::string problem = relative_path_problem(s);
                                                          if (problem.empty() && s.find_first_of("*?[") != std::string::npos)
                                                              problem = "must be a file's path, not a glob";
                                                          return problem;
                                                      });
            }
        }
        if (!has_run)
            m_reader.issue(node, where + ".run is missing; it holds the commands whose result is snapshotted");
        m_job.bake = std::move(bake);
    }

    void read_steps(const YamlNode& node) {
        std::string steps_path = at("steps");
        if (!m_reader.expect_kind(node, Kind::Sequence, steps_path, "a list of steps")) return;
        if (!m_reader.count_within(node, steps_path, node.items.size(), PipelineLimits::kMaxSteps, "step", "steps"))
            return;
        std::map<std::string, std::size_t> index_of_name;
        for (std::size_t i = 0; i < node.items.size(); ++i) {
            const YamlNode& item = node.items[i];
            std::string path = steps_path + "[" + std::to_string(i) + "]";
            if (!m_reader.expect_kind(item, Kind::Map, path, "a map (name, run, timeout_seconds, env)")) continue;
            PipelineStep step;
            bool has_name = false, has_run = false;
            for (const auto& [key, value] : m_reader.keyed(item, path, {"name", "run", "timeout_seconds", "env"})) {
                const YamlNode& v = *value;
                std::string where = path + "." + key;
                if (key == "name") {
                    has_name = true;
                    auto name = m_reader.string_value(v, where, PipelineLimits::kMaxNameBytes);
                    if (!name) continue;
                    if (has_control_char(*name, false)) {
                        m_reader.issue(v, where + " must be one line without control characters");
                    } else if (auto [it, fresh] = index_of_name.emplace(*name, i); !fresh) {
                        m_reader.issue(v, where + " `" + *name + "` is already the name of " + steps_path + "[" +
                                              std::to_string(it->second) + "]");
                    } else {
                        step.name = *name;
                    }
                } else if (key == "run") {
                    has_run = true;
                    if (auto run = m_reader.string_value(v, where, PipelineLimits::kMaxRunBytes)) step.run = *run;
                } else if (key == "timeout_seconds") {
                    step.timeout_seconds = m_reader.seconds_value(v, where);
                    if (step.timeout_seconds && *step.timeout_seconds > m_job.timeout_seconds)
                        m_reader.issue(v, where + " (" + std::to_string(*step.timeout_seconds) +
                                              ") is longer than the job's timeout_seconds (" +
                                              std::to_string(m_job.timeout_seconds) +
                                              (m_timeout ? ", line " + std::to_string(m_timeout->line)
                                                         : std::string(", the default")) +
                                              ")");
                } else {
                    step.env = m_reader.env_value(v, where);
                }
            }
            if (!has_name) m_reader.issue(item, path + " needs a `name`");
            if (!has_run) m_reader.issue(item, path + " needs a `run` (the commands of the step)");
            m_job.steps.push_back(std::move(step));
        }
    }

    // `needs: lint` or `needs: [lint, test]`; whether each names a job is checked across jobs.
    void read_needs(const YamlNode& node) {
        std::string where = at("needs");
        auto add = [&](const YamlNode& item, const std::string& path) {
            auto name = m_reader.string_value(item, path, PipelineLimits::kMaxNameBytes);
            if (!name) return;
            if (std::find(m_job.needs.begin(), m_job.needs.end(), *name) != m_job.needs.end()) {
                m_reader.issue(item, path + " `" + *name + "` is listed twice");
                return;
            }
            m_job.needs.push_back(*name);
            m_source.needs.push_back(NeedSource{*name, &item, path});
        };
        if (node.kind == Kind::Scalar) {
            add(node, where);
        } else if (node.kind == Kind::Sequence) {
            if (node.items.size() > PipelineLimits::kMaxJobs) {
                m_reader.issue(node, where + " has " + std::to_string(node.items.size()) + " entries; the limit is " +
                                         std::to_string(PipelineLimits::kMaxJobs));
                return;
            }
            for (std::size_t i = 0; i < node.items.size(); ++i)
                add(node.items[i], where + "[" + std::to_string(i) + "]");
        } else {
            m_reader.issue(node,
                           where + " must be a job's name or a list of them, not " + SchemaReader::kind_name(node));
        }
    }

    // `matrix: {axis: [values], ...}`: its size is checked here, where the reader can point at it.
    void read_matrix(const YamlNode& node) {
        std::string where = at("matrix");
        if (!m_reader.expect_kind(node, Kind::Map, where, "a map of axis: [values]")) return;
        if (!m_reader.count_within(node, where, node.entries.size(), PipelineLimits::kMaxMatrixAxes, "axis", "axes"))
            return;
        std::map<std::string, std::string> axis_of_variable;  // KILN_MATRIX_NODE -> node
        std::size_t combinations = 1;
        for (const auto& [key, value] : node.entries) {
            if (key.kind != Kind::Scalar || !is_env_name(key.scalar) || key.scalar.size() > PipelineLimits::kMaxNameBytes) {
                m_reader.issue(key, "an axis of " + where +
                                        " must be a name of letters, digits and _, not starting with a digit");
                continue;
            }
            std::string axis_path = where + "." + key.scalar;
            // `node` and `NODE` would both set KILN_MATRIX_NODE.
            auto [it, fresh] = axis_of_variable.emplace(matrix_env_name(key.scalar), key.scalar);
            if (!fresh) {
                m_reader.issue(key, axis_path + " sets the same variable (" + it->first + ") as " + where + "." +
                                        it->second);
                continue;
            }
            if (!m_reader.expect_kind(value, Kind::Sequence, axis_path, "a list of values")) continue;
            if (value.items.empty()) {
                m_reader.issue(value, axis_path + " must have at least one value");
                continue;
            }
            combinations = std::min(combinations * value.items.size(), PipelineLimits::kMaxMatrixCombinations + 1);
            auto values = m_reader.string_list(value, axis_path, value.items.size(),
                                               PipelineLimits::kMaxMatrixValueBytes, matrix_value_problem);
            if (values.size() == value.items.size()) m_job.matrix.push_back(MatrixAxis{key.scalar, std::move(values)});
        }
        if (combinations > PipelineLimits::kMaxMatrixCombinations) {
            // The exact count, for the message; saturated, as 8 axes of 2,500 values overflow 64 bits.
            constexpr std::size_t kCountCap = 1'000'000'000;
            std::size_t exact = 1;
            for (const auto& entry : node.entries)
                exact = std::min(exact * std::max<std::size_t>(entry.value.items.size(), 1), kCountCap);
            std::string count = exact == kCountCap ? std::string("over a billion") : std::to_string(exact);
            m_reader.issue(node, where + " makes " + count + " combinations; at most " +
                                     std::to_string(PipelineLimits::kMaxMatrixCombinations));
            m_job.matrix.clear();  // counted once: the plan's total is not a second error for it
        }
    }

    void check_fork_after(const YamlNode& node) {
        std::string where = at("fork_after");
        const std::string& name = *m_job.fork_after;
        if (m_job.parallel < 2) {
            m_reader.issue(node, where + " needs `parallel` of 2 or more: the number of shards forked after `" +
                                     name + "`");
            return;
        }
        std::vector<std::string> names;
        for (const auto& step : m_job.steps) names.push_back(step.name);
        // Steps that could not be read, or a step whose name was refused, are errors already; the
        // name meant may be among them.
        if (names.empty() || std::find(names.begin(), names.end(), "") != names.end()) return;
        auto found = std::find(names.begin(), names.end(), name);
        if (found == names.end()) {
            m_reader.issue(node, where + " `" + name + "` is not a step of " + m_source.path + "; its steps are: " +
                                     join_names(names));
        } else if (found + 1 == names.end()) {
            m_reader.issue(node,
                           where + " names the last step (`" + name + "`): the shards would have no step to run");
        }
    }

    SchemaReader& m_reader;
    JobForm m_form;
    JobDefinition& m_job;
    JobSource m_source;
    const YamlNode* m_timeout = nullptr;  // the job's timeout_seconds, when written
};

}  // namespace

bool is_job_name(const std::string& s) {
    if (s.empty() || s.size() > PipelineLimits::kMaxJobNameBytes) return false;
    auto alnum = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    return alnum(s[0]) && std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '_' || c == '-'; });
}

JobSource read_job(SchemaReader& reader, const YamlNode& node, JobForm form, const std::string& path,
                   JobDefinition& job) {
    return JobReader(reader, form, path, job).read(node);
}

}  // namespace kiln::ci
