// Finds out once per process which QEMU we drive: its version and whether its seccomp sandbox is available.
#pragma once

#include <string>

#include "base/result.h"

namespace kiln::vm {

struct QemuVersion {
    int major = 0;
    int minor = 0;
    int micro = 0;

    std::string to_string() const;
    bool at_least(int maj, int min) const { return major > maj || (major == maj && minor >= min); }
};

struct QemuInfo {
    std::string binary;      // absolute path (PATH lookup) of env KILN_QEMU or qemu-system-x86_64
    QemuVersion version;
    std::string banner;      // the first line of --version
    bool sandbox = false;    // accepts our -sandbox settings (built with seccomp)
};

// "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)" -> 7.2.22.
Result<QemuVersion> parse_qemu_version(const std::string& output);

// The QEMU binary name or path to run.
std::string qemu_binary();

// Runs the binary once: cached for the life of the process once its sandbox works; a failure or a
// QEMU without the sandbox is probed again after 10 s.
Result<QemuInfo> qemu_info();

}  // namespace kiln::vm
