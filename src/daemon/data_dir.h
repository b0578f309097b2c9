// kilnd's data directory: created, made absolute, and handed to the VM layer (KILN_DATA_DIR).
#pragma once

#include <string>

#include "base/result.h"

namespace kiln::daemon {

// mkdir -p (0700) of `dir` and of vms/, templates/ and snapshots/ in it; returns its canonical
// path and sets KILN_DATA_DIR to it, which is where src/vm puts run directories.
Result<std::string> prepare_data_dir(const std::string& dir);

}  // namespace kiln::daemon
