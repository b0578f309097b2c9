// Pipeline: a `.kiln.yml` file as a plain struct, after validation (see docs/pipeline.md).
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

struct Pipeline {
    std::string template_name = "base";
    std::optional<PipelineBake> bake;
    std::map<std::string, std::string> env;
    std::vector<std::string> secrets;  // names only; values come from the server's configuration
    std::vector<PipelineStep> steps;   // at least one
    std::vector<std::string> junit;      // globs, relative to the checkout
    std::vector<std::string> artifacts;  // globs, relative to the checkout
    std::uint32_t timeout_seconds = PipelineLimits::kDefaultTimeoutSeconds;  // the job's hard cap
};

}  // namespace kiln::ci
