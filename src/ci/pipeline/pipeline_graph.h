// The checks of a `.kiln.yml` that span its jobs: what each `needs` names (a job of the file, not
// itself, no cycle) and the plan (its size, its names).
#pragma once

#include <vector>

#include "ci/pipeline/job_reader.h"
#include "ci/pipeline/pipeline.h"
#include "ci/pipeline/schema_reader.h"

namespace kiln::ci {

// `jobs` and `sources` are parallel (the jobs read from `jobs:`, in file order); `jobs_node` is the
// `jobs:` map, where problems of the whole pipeline are reported.
void check_needs(SchemaReader& reader, const std::vector<JobDefinition>& jobs, const std::vector<JobSource>& sources);

// Run when every job was read: the number of planned jobs, then (when nothing else is wrong) the
// planned names: unique and short enough to be a folder's name under /work/needs.
void check_plan(SchemaReader& reader, const Pipeline& pipeline, const std::vector<JobSource>& sources,
                const YamlNode& jobs_node);

}  // namespace kiln::ci
