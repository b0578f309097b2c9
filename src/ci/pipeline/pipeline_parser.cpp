// parse_pipeline: the `.kiln.yml` schema over a bounded YAML tree; each field's checks name its path.
#include "ci/pipeline/pipeline_parser.h"

#include <algorithm>
#include <charconv>
#include <initializer_list>
#include <utility>

#include "ci/pipeline/yaml_tree.h"

namespace kiln::ci {
namespace {

using Kind = YamlNode::Kind;
constexpr std::size_t kMaxIssues = 50;  // past this the file is not worth reading further

std::string join(std::initializer_list<const char*> names) {
    std::string out;
    for (const char* name : names) out += (out.empty() ? "" : ", ") + std::string(name);
    return out;
}

bool is_env_name(const std::string& s) {
    if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    });
}

bool is_template_name(const std::string& s) {
    if (s.empty() || s.size() > 64 || s[0] == '.' || s[0] == '-' || s[0] == '_') return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    });
}

bool has_control_char(const std::string& s, bool allow_newlines) {
    return std::any_of(s.begin(), s.end(), [&](char c) {
        auto u = static_cast<unsigned char>(c);
        if (allow_newlines && (c == '\n' || c == '\t' || c == '\r')) return false;
        return u < 0x20 || u == 0x7f;
    });
}

// Why `path` is not a safe relative path inside the checkout, or "" when it is.
std::string relative_path_problem(const std::string& path) {
    if (path.empty()) return "must not be empty";
    if (path[0] == '/') return "must be relative to the repository, not absolute";
    if (has_control_char(path, false)) return "must not contain control characters";
    std::size_t start = 0;
    while (start <= path.size()) {
        std::size_t end = path.find('/', start);
        if (end == std::string::npos) end = path.size();
        if (path.compare(start, end - start, "..") == 0) return "must not contain `..`";
        start = end + 1;
    }
    return "";
}

class Validator {
public:
    PipelineParse run(std::string_view text) {
        YamlLoadResult loaded = load_yaml(text);
        if (!loaded.root) {
            m_out.issues.push_back(loaded.issue);
            return std::move(m_out);
        }
        // The one-job form (a top-level `steps`) until `jobs:` is read (issue 16).
        Pipeline pipeline;
        JobDefinition job;
        job.name = kSingleJobName;
        read_root(*loaded.root, job);
        pipeline.jobs.push_back(std::move(job));
        std::stable_sort(m_out.issues.begin(), m_out.issues.end(),
                         [](const SourceIssue& a, const SourceIssue& b) { return a.line < b.line; });
        if (m_out.issues.empty()) m_out.pipeline = std::move(pipeline);
        return std::move(m_out);
    }

private:
    void issue(const YamlNode& at, std::string message) {
        if (m_out.issues.size() < kMaxIssues) m_out.issues.push_back(SourceIssue{at.line, at.column, std::move(message)});
    }

    static const char* kind_name(const YamlNode& node) {
        switch (node.kind) {
            case Kind::Null: return "empty";
            case Kind::Scalar: return "a single value";
            case Kind::Sequence: return "a list";
            case Kind::Map: return "a map";
        }
        return "?";
    }

    // A map's entries by key, checking each key is a known, unique string. Unknown keys are
    // errors: a misspelt `timeout_secnods` silently ignored would be a job without its cap.
    std::vector<std::pair<std::string, const YamlNode*>> keyed(const YamlNode& map, const std::string& path,
                                                               std::initializer_list<const char*> known) {
        std::vector<std::pair<std::string, const YamlNode*>> out;
        std::map<std::string, int> first_line;
        for (const auto& [key, value] : map.entries) {
            if (key.kind != Kind::Scalar || key.scalar.empty()) {
                issue(key, (path.empty() ? std::string("a key") : "a key in " + path) + " must be a non-empty string");
                continue;
            }
            std::string where = path.empty() ? key.scalar : path + "." + key.scalar;
            if (auto [it, fresh] = first_line.emplace(key.scalar, key.line); !fresh) {
                issue(key, "duplicate key `" + where + "` (first on line " + std::to_string(it->second) + ")");
                continue;
            }
            const std::string& name = key.scalar;  // clang 14 cannot capture a structured binding
            bool is_known = std::any_of(known.begin(), known.end(), [&](const char* k) { return name == k; });
            if (!is_known) {
                issue(key, "unknown key `" + where + "`; expected one of: " + join(known));
                continue;
            }
            out.emplace_back(key.scalar, &value);
        }
        return out;
    }

    bool expect_kind(const YamlNode& node, Kind kind, const std::string& path, const char* what) {
        if (node.kind == kind) return true;
        issue(node, path + " must be " + what + ", not " + kind_name(node));
        return false;
    }

    std::optional<std::string> string_value(const YamlNode& node, const std::string& path, std::size_t max_bytes,
                                            bool allow_empty = false) {
        if (node.kind != Kind::Scalar) {
            issue(node, path + " must be a string, not " + kind_name(node) +
                            (node.kind == Kind::Null ? " (write \"\" for an empty string)" : ""));
            return std::nullopt;
        }
        if (node.scalar.size() > max_bytes) {
            issue(node, path + " is " + std::to_string(node.scalar.size()) + " bytes; the limit is " +
                            std::to_string(max_bytes));
            return std::nullopt;
        }
        if (!allow_empty && node.scalar.find_first_not_of(" \t\r\n") == std::string::npos) {
            issue(node, path + " must not be empty");
            return std::nullopt;
        }
        return node.scalar;
    }

    // A whole number of seconds in [1, max], written as plain digits (not "10", 1e3, 0x10 or 10.5).
    std::optional<std::uint32_t> seconds_value(const YamlNode& node, const std::string& path) {
        const std::string& s = node.scalar;
        bool digits = node.kind == Kind::Scalar && node.plain && !s.empty() && s.size() <= 10 &&
                      std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
        std::uint64_t value = 0;
        if (digits) std::from_chars(s.data(), s.data() + s.size(), value);
        if (!digits || value == 0) {
            issue(node, path + " must be a positive integer (seconds)");
            return std::nullopt;
        }
        if (value > PipelineLimits::kMaxTimeoutSeconds) {
            issue(node, path + " must be at most " + std::to_string(PipelineLimits::kMaxTimeoutSeconds) + " (24 hours)");
            return std::nullopt;
        }
        return static_cast<std::uint32_t>(value);
    }

    std::map<std::string, std::string> env_value(const YamlNode& node, const std::string& path) {
        std::map<std::string, std::string> env;
        if (!expect_kind(node, Kind::Map, path, "a map of NAME: value")) return env;
        if (node.entries.size() > PipelineLimits::kMaxEnv) {
            issue(node, path + " has " + std::to_string(node.entries.size()) + " variables; the limit is " +
                            std::to_string(PipelineLimits::kMaxEnv));
            return env;
        }
        std::map<std::string, int> first_line;
        for (const auto& [key, value] : node.entries) {
            if (key.kind != Kind::Scalar || !is_env_name(key.scalar) ||
                key.scalar.size() > PipelineLimits::kMaxNameBytes) {
                issue(key, "a name in " + path + " must be letters, digits and _, not starting with a digit");
                continue;
            }
            std::string where = path + "." + key.scalar;
            if (auto [it, fresh] = first_line.emplace(key.scalar, key.line); !fresh) {
                issue(key, "duplicate key `" + where + "` (first on line " + std::to_string(it->second) + ")");
                continue;
            }
            if (auto text = string_value(value, where, PipelineLimits::kMaxValueBytes, true)) env[key.scalar] = *text;
        }
        return env;
    }

    // A list of strings, each checked by `check` (which returns why it is wrong, or "").
    template <typename Check>
    std::vector<std::string> string_list(const YamlNode& node, const std::string& path, std::size_t max_count,
                                         std::size_t max_bytes, Check check) {
        std::vector<std::string> out;
        if (!expect_kind(node, Kind::Sequence, path, "a list")) return out;
        if (node.items.size() > max_count) {
            issue(node, path + " has " + std::to_string(node.items.size()) + " entries; the limit is " +
                            std::to_string(max_count));
            return out;
        }
        for (std::size_t i = 0; i < node.items.size(); ++i) {
            std::string where = path + "[" + std::to_string(i) + "]";
            auto text = string_value(node.items[i], where, max_bytes);
            if (!text) continue;
            if (std::string problem = check(*text); !problem.empty()) {
                issue(node.items[i], where + " " + problem);
                continue;
            }
            if (std::find(out.begin(), out.end(), *text) != out.end()) {
                issue(node.items[i], where + " `" + *text + "` is listed twice");
                continue;
            }
            out.push_back(std::move(*text));
        }
        return out;
    }

    void read_root(const YamlNode& root, JobDefinition& pipeline) {
        if (root.kind == Kind::Null) {
            issue(root, "the file is empty; a pipeline needs at least `steps`");
            return;
        }
        if (!expect_kind(root, Kind::Map, "the top level", "a map (template, steps, …)")) return;
        const YamlNode* steps = nullptr;
        const YamlNode* job_timeout = nullptr;
        for (const auto& [key, value] : keyed(root, "", {"template", "bake", "env", "secrets", "steps", "junit",
                                                          "artifacts", "timeout_seconds"})) {
            const YamlNode& v = *value;
            if (key == "template") {
                if (auto name = string_value(v, key, 64)) {
                    if (is_template_name(*name)) pipeline.template_name = *name;
                    else issue(v, "template must be a template name (lowercase letters, digits, ., _ and -)");
                }
            } else if (key == "bake") {
                read_bake(v, pipeline);
            } else if (key == "env") {
                pipeline.env = env_value(v, key);
            } else if (key == "secrets") {
                pipeline.secrets = string_list(v, key, PipelineLimits::kMaxSecrets, PipelineLimits::kMaxNameBytes,
                                               [](const std::string& s) -> std::string {
                                                   return is_env_name(s) ? "" : "must be a variable name (letters, digits and _)";
                                               });
            } else if (key == "steps") {
                steps = &v;
            } else if (key == "junit" || key == "artifacts") {
                auto globs = string_list(v, key, PipelineLimits::kMaxGlobs, PipelineLimits::kMaxPathBytes,
                                         relative_path_problem);
                (key == "junit" ? pipeline.junit : pipeline.artifacts) = std::move(globs);
            } else if (key == "timeout_seconds") {
                job_timeout = &v;
                if (auto seconds = seconds_value(v, key)) pipeline.timeout_seconds = *seconds;
            }
        }
        for (const std::string& name : pipeline.secrets) {
            if (pipeline.env.count(name)) issue(root, "env." + name + " is also listed in secrets; a secret's value comes from the server");
        }
        if (!steps) {
            issue(root, "`steps` is missing; a pipeline needs at least one step");
            return;
        }
        read_steps(*steps, pipeline, job_timeout);
    }

    void read_bake(const YamlNode& node, JobDefinition& pipeline) {
        if (!expect_kind(node, Kind::Map, "bake", "a map (key_files, run)")) return;
        PipelineBake bake;
        bool has_run = false;
        for (const auto& [key, value] : keyed(node, "bake", {"key_files", "run"})) {
            if (key == "run") {
                if (auto run = string_value(*value, "bake.run", PipelineLimits::kMaxRunBytes)) bake.run = *run;
                has_run = true;
            } else {
                bake.key_files = string_list(*value, "bake.key_files", PipelineLimits::kMaxKeyFiles,
                                             PipelineLimits::kMaxPathBytes, [](const std::string& s) {
                                                 std::string problem = relative_path_problem(s);
                                                 if (problem.empty() && s.find_first_of("*?[") != std::string::npos)
                                                     problem = "must be a file's path, not a glob";
                                                 return problem;
                                             });
            }
        }
        if (!has_run) issue(node, "bake.run is missing; it holds the commands whose result is snapshotted");
        pipeline.bake = std::move(bake);
    }

    void read_steps(const YamlNode& node, JobDefinition& pipeline, const YamlNode* job_timeout) {
        if (!expect_kind(node, Kind::Sequence, "steps", "a list of steps")) return;
        if (node.items.empty()) {
            issue(node, "steps must have at least one step");
            return;
        }
        if (node.items.size() > PipelineLimits::kMaxSteps) {
            issue(node, "steps has " + std::to_string(node.items.size()) + " steps; the limit is " +
                            std::to_string(PipelineLimits::kMaxSteps));
            return;
        }
        std::map<std::string, std::size_t> index_of_name;
        for (std::size_t i = 0; i < node.items.size(); ++i) {
            const YamlNode& item = node.items[i];
            std::string path = "steps[" + std::to_string(i) + "]";
            if (!expect_kind(item, Kind::Map, path, "a map (name, run, timeout_seconds, env)")) continue;
            PipelineStep step;
            bool has_name = false, has_run = false;
            for (const auto& [key, value] : keyed(item, path, {"name", "run", "timeout_seconds", "env"})) {
                const YamlNode& v = *value;
                std::string where = path + "." + key;
                if (key == "name") {
                    has_name = true;
                    auto name = string_value(v, where, PipelineLimits::kMaxNameBytes);
                    if (!name) continue;
                    if (has_control_char(*name, false)) {
                        issue(v, where + " must be one line without control characters");
                    } else if (auto [it, fresh] = index_of_name.emplace(*name, i); !fresh) {
                        issue(v, where + " `" + *name + "` is already the name of steps[" + std::to_string(it->second) + "]");
                    } else {
                        step.name = *name;
                    }
                } else if (key == "run") {
                    has_run = true;
                    if (auto run = string_value(v, where, PipelineLimits::kMaxRunBytes)) step.run = *run;
                } else if (key == "timeout_seconds") {
                    step.timeout_seconds = seconds_value(v, where);
                    if (step.timeout_seconds && *step.timeout_seconds > pipeline.timeout_seconds)
                        issue(v, where + " (" + std::to_string(*step.timeout_seconds) +
                                     ") is longer than the job's timeout_seconds (" +
                                     std::to_string(pipeline.timeout_seconds) +
                                     (job_timeout ? ", line " + std::to_string(job_timeout->line) : std::string(", the default")) +
                                     ")");
                } else {
                    step.env = env_value(v, where);
                }
            }
            if (!has_name) issue(item, path + " needs a `name`");
            if (!has_run) issue(item, path + " needs a `run` (the commands of the step)");
            pipeline.steps.push_back(std::move(step));
        }
    }

    PipelineParse m_out;
};

}  // namespace

PipelineParse parse_pipeline_detailed(std::string_view text) { return Validator().run(text); }

Result<Pipeline> parse_pipeline(std::string_view text) {
    PipelineParse parsed = parse_pipeline_detailed(text);
    if (parsed.pipeline) return std::move(*parsed.pipeline);
    std::string message;
    for (const SourceIssue& issue : parsed.issues) message += (message.empty() ? "" : "\n") + issue.to_string();
    return make_error(ErrorCode::InvalidPipeline, message);
}

}  // namespace kiln::ci

namespace kiln::ci {

std::string matrix_env_name(const std::string& axis) {
    std::string out = "KILN_MATRIX_";
    for (char c : axis) out += (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c;
    return out;
}

std::vector<PlannedJob> plan_pipeline(const Pipeline& pipeline) {
    // Without matrices for now (issue 16 adds them): one job per definition.
    std::vector<PlannedJob> out;
    for (std::size_t i = 0; i < pipeline.jobs.size(); ++i)
        out.push_back(PlannedJob{pipeline.jobs[i].name, i, {}, pipeline.jobs[i].needs});
    return out;
}

}  // namespace kiln::ci
