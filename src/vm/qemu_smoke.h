// A QEMU smoke test for `kiln doctor`: start QEMU (with its seccomp sandbox), talk QMP, quit.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

namespace kiln::vm {

struct QemuSmokeResult {
    bool sandbox = false;     // ran with -sandbox
    int64_t qmp_ready_ms = 0; // spawn to QMP negotiated
    std::string version;      // from query-version
};

// Runs a machine-less QEMU in a temporary folder under `scratch_dir` and removes it afterwards.
Result<QemuSmokeResult> qemu_smoke_test(const std::string& scratch_dir);

}  // namespace kiln::vm
