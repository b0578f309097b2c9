// Pipeline: a `.kiln.yml` file as plain structs, after validation (see docs/pipeline.md): its jobs as
// written (JobDefinition), and plan_pipeline's expansion of them into the jobs that run (PlannedJob).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kiln::ci {

// Limits on what a pipeline file may ask for. A file crossing one is refused with the line.
struct PipelineLimits {
    static constexpr std::uint32_t kMaxTimeoutSeconds = 24 * 3600;
    static constexpr std::uint32_t kDefaultTimeoutSeconds = 3600;
    static constexpr std::size_t kMaxSteps = 64;
    static constexpr std::size_t kMaxEnv = 128;      // per map: the job's `env`, each step's `env`
    static constexpr std::size_t kMaxSecrets = 64;
    static constexpr std::size_t kMaxGlobs = 64;     // per list: `junit`, `artifacts`
    static constexpr std::size_t kMaxKeyFiles = 32;
    static constexpr std::size_t kMaxNameBytes = 128;       // step names, env and secret names
    static constexpr std::size_t kMaxValueBytes = 8 * 1024;  // env values
    static constexpr std::size_t kMaxRunBytes = 64 * 1024;   // a `run` script
    static constexpr std::size_t kMaxPathBytes = 512;        // globs and key files
    // Pipelines of several jobs (`jobs:`).
    static constexpr std::size_t kMaxJobs = 64;             // jobs as written in `jobs:`
    static constexpr std::size_t kMaxPlannedJobs = 64;      // after every matrix is expanded
    static constexpr std::size_t kMaxJobNameBytes = 64;     // keys of `jobs:`
    static constexpr std::size_t kMaxMatrixAxes = 8;
    static constexpr std::size_t kMaxMatrixCombinations = 32;  // per job
    static constexpr std::size_t kMaxMatrixValueBytes = 128;
    static constexpr std::uint32_t kMaxParallel = 16;          // `parallel: N`
    // A planned name ("test (18, debian)") is a folder's name under /work/needs: NAME_MAX.
    static constexpr std::size_t kMaxPlannedNameBytes = 255;
};

struct PipelineBake {
    std::vector<std::string> key_files;  // relative paths in the repository, hashed into the key
    std::string run;                     // shell script run once per key, then snapshotted
};

struct PipelineStep {
    std::string name;
    std::string run;                               // a shell script (`sh -e -c`)
    std::optional<std::uint32_t> timeout_seconds;  // none: only the job's cap applies
    std::map<std::string, std::string> env;        // on top of the job's env
};

// One axis of a job's `matrix`: its name (an env-style name) and its values, as written.
struct MatrixAxis {
    std::string name;
    std::vector<std::string> values;
};

// One job as written in the file: an entry of `jobs:`, or the whole file when it has a top-level
// `steps` (the one-job form, named kSingleJobName).
struct JobDefinition {
    std::string name;  // the key in `jobs:`
    std::string template_name = "base";
    std::optional<PipelineBake> bake;
    std::map<std::string, std::string> env;
    std::vector<std::string> secrets;  // names only; values come from the server's configuration
    std::vector<PipelineStep> steps;   // at least one
    std::vector<std::string> junit;      // globs, relative to the checkout
    std::vector<std::string> artifacts;  // globs, relative to the checkout
    std::uint32_t timeout_seconds = PipelineLimits::kDefaultTimeoutSeconds;  // the job's hard cap (each shard's)
    std::vector<std::string> needs;   // names of other jobs as written; a matrix job's name stands for all of it
    std::vector<MatrixAxis> matrix;   // in file order; empty: no matrix
    std::uint32_t parallel = 1;       // shards: 1 to kMaxParallel
    std::optional<std::string> fork_after;  // a step's name; only with parallel > 1
};

// The name of the job of a file written in the one-job form (a top-level `steps`).
inline constexpr const char* kSingleJobName = "job";

struct Pipeline {
    std::vector<JobDefinition> jobs;  // in file order; at least one
};

// A job that runs: one per job as written, one per combination for a matrix job.
struct PlannedJob {
    // "lint"; a matrix combination: the definition's name and its values in axis order,
    // "test (18, debian)". Unique in the plan.
    std::string name;
    std::size_t definition = 0;                 // index in Pipeline::jobs
    std::map<std::string, std::string> matrix;  // axis name -> value; empty without a matrix
    std::vector<std::string> needs;             // PlannedJob names, every combination of a matrix need
};

// The environment a matrix value is given under: KILN_MATRIX_<AXIS>, the axis upper-cased.
std::string matrix_env_name(const std::string& axis);

// The jobs of a valid pipeline (parse_pipeline checked the limits, names and needs), in file
// order, a matrix job's combinations in order (the first axis varies slowest). Deterministic:
// the worker that plans the pipeline and each job's attempt get the same list from the same file.
std::vector<PlannedJob> plan_pipeline(const Pipeline& pipeline);

}  // namespace kiln::ci
