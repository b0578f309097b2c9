// read_job: one job of a `.kiln.yml` (the whole file in the one-job form, or an entry of `jobs:`)
// into a JobDefinition, every problem collected by the SchemaReader with its path.
#pragma once

#include <string>
#include <vector>

#include "ci/pipeline/pipeline.h"
#include "ci/pipeline/schema_reader.h"
#include "ci/pipeline/yaml_tree.h"

namespace kiln::ci {

// Where a job's `needs` entries are in the file: the checks across jobs (unknown names, cycles)
// run after every job is read and point at them.
struct NeedSource {
    std::string name;
    const YamlNode* node = nullptr;
    std::string path;  // "jobs.e2e.needs[0]", or "jobs.e2e.needs" for a single name
};

struct JobSource {
    const YamlNode* at = nullptr;  // the job's key in `jobs:`, or the top-level map of the one-job form
    std::string path;              // "jobs.e2e"; "" in the one-job form
    std::vector<NeedSource> needs;
};

enum class JobForm {
    TopLevel,  // a file with a top-level `steps`: today's keys only
    InJobs,    // an entry of `jobs:`: also needs, matrix, parallel and fork_after
};

// Reads the map `node` into `job` (whose `name` the caller set); `path` prefixes each field's path.
JobSource read_job(SchemaReader& reader, const YamlNode& node, JobForm form, const std::string& path,
                   JobDefinition& job);

// A key of `jobs:`: letters, digits, _ and -, starting with a letter or digit, at most kMaxJobNameBytes.
bool is_job_name(const std::string& s);

}  // namespace kiln::ci
