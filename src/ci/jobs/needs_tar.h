// NeedsTar: the artifacts of the jobs a job needs, as one tar written on the host, which a single
// guest command extracts under /work/needs (docs/pipeline.md): <needed job's name>/<artifact name>.
// The host files are the needed jobs' stored artifacts (JobRunner::artifact_path); they are opened
// without following a symlink, must be regular files, and all together stay under a bound.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "vm/agent_client.h"

namespace kiln::ci {

struct NeededArtifact {
    std::string host_path;  // where the needed job's artifact is on the host
    std::string name;       // its path in the tar: "<job name>/<artifact name>"
};

struct NeedsTarTotals {
    size_t files = 0;
    uint64_t bytes = 0;                 // the files' contents
    std::vector<std::string> left_out;  // "<name>: why", for each file that was not there or not a regular file
};

// Writes the tar at `path` (replacing it): a directory entry for each of `folders` (so a needed
// job with no artifacts still has its folder), then each file. A file that is missing or is not a
// regular file is left out and said in left_out; the contents passing `max_bytes` is TooLarge.
Result<NeedsTarTotals> write_needs_tar(const std::string& path, const std::vector<std::string>& folders,
                                       const std::vector<NeededArtifact>& files, uint64_t max_bytes);

// A relative path that extracts under its folder and nowhere else: not empty, not absolute, no
// empty, "." or ".." component, no NUL or newline (names come from guests' listings and job records).
bool is_plain_relative_path(std::string_view path);

// A file's bytes, opened now (it may be removed once every reader is made): each call gives a
// reader of its own, so several VMs can read one file at once.
vm::ByteSource file_byte_source(const std::string& path);

}  // namespace kiln::ci
