// kilnd's data directory: created, made absolute, and handed to the VM layer (KILN_DATA_DIR).
#pragma once

#include <string>

#include "base/result.h"

namespace kiln::daemon {

// mkdir -p (0700) of `dir` and of vms/, templates/, snapshots/ and paused/ in it; returns its canonical
// path and sets KILN_DATA_DIR to it, which is where src/vm puts run directories.
Result<std::string> prepare_data_dir(const std::string& dir);

// Where this host keeps snapshot `id`'s files: built from the id, never taken from the snapshot's
// record, whose `dir` is the path on the host that took it (in a fleet a copy lives elsewhere).
inline std::string snapshot_dir(const std::string& data_dir, const std::string& id) {
    return data_dir + "/snapshots/" + id;
}

// Where a paused sandbox's private snapshot is kept: on the host that ran it, which is the one
// that resumes it (docs/pause.md). Never listed as a user snapshot.
inline std::string paused_dir(const std::string& data_dir, const std::string& sandbox_id) {
    return data_dir + "/paused/" + sandbox_id;
}

}  // namespace kiln::daemon
