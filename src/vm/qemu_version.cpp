// Runs `qemu-system-x86_64 -sandbox ... -version` once and parses the version banner.
#include "vm/qemu_version.h"


#include <cstdlib>
#include <mutex>
#include <optional>

#include "base/child_process.h"
#include "vm/qemu_command.h"

namespace kiln::vm {

std::string QemuVersion::to_string() const {
    return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(micro);
}

Result<QemuVersion> parse_qemu_version(const std::string& output) {
    static const std::string marker = "version ";
    size_t pos = output.find(marker);
    if (pos == std::string::npos) return make_error(ErrorCode::QemuError, "no version in QEMU's --version output");
    pos += marker.size();
    QemuVersion v;
    int* parts[3] = {&v.major, &v.minor, &v.micro};
    for (int i = 0; i < 3; ++i) {
        size_t start = pos;
        long value = 0;
        while (pos < output.size() && isdigit(static_cast<unsigned char>(output[pos])) && pos - start < 6)
            value = value * 10 + (output[pos++] - '0');
        if (pos == start) {
            if (i == 2) break;  // "8.0" has no micro part
            return make_error(ErrorCode::QemuError, "cannot parse QEMU version from: " + output.substr(0, 120));
        }
        *parts[i] = static_cast<int>(value);
        if (pos >= output.size() || output[pos] != '.') break;
        ++pos;
    }
    return v;
}

std::string qemu_binary() {
    const char* env = std::getenv("KILN_QEMU");
    return env && *env ? env : "qemu-system-x86_64";
}

namespace {

// The binary's absolute path (a jailed QEMU is exec'd by path inside its jail), searched as the
// probe below runs it (the minimal environment's PATH); the name itself when nothing matches
// (the probe then reports it missing).
std::string resolve_binary(const std::string& name) {
    auto found = find_program(name, minimal_environment());
    return found.ok() ? *found : name;
}

Result<QemuInfo> probe() {
    QemuInfo info;
    info.binary = resolve_binary(qemu_binary());
    // One run answers both questions when the sandbox works; QEMU parses -sandbox before -version.
    auto run = run_and_capture(qemu_version_argv(info.binary, /*with_sandbox=*/true), Millis(10000));
    if (run.ok() && run->status.success()) {
        info.sandbox = true;
    } else {
        run = run_and_capture(qemu_version_argv(info.binary, /*with_sandbox=*/false), Millis(10000));
        if (!run.ok())
            return make_error(ErrorCode::QemuMissing, "cannot run " + info.binary + ": " + run.error().message +
                                                  " (install qemu-system-x86, or set KILN_QEMU)");
        if (!run->status.success())
            return make_error(ErrorCode::QemuError, info.binary + " --version " + run->status.describe() + ": " +
                                                run->output.substr(0, 500));
    }
    info.banner = run->output.substr(0, run->output.find('\n'));
    info.version = TRY(parse_qemu_version(run->output));
    return info;
}

}  // namespace

Result<QemuInfo> qemu_info() {
    // A QEMU with a working sandbox is cached for the life of the process. A failed probe, or one
    // without the sandbox, is tried again after a while: with seccomp mandatory, one probe that
    // failed on a loaded host must not refuse VMs (or run them unconfined) for good.
    static std::mutex mutex;
    static std::optional<Result<QemuInfo>> cached;
    static Clock::time_point probed_at;
    std::lock_guard lock(mutex);
    bool settled = cached && cached->ok() && (*cached)->sandbox;
    if (!cached || (!settled && Clock::now() - probed_at > Millis(10000))) {
        cached.emplace(probe());
        probed_at = Clock::now();
    }
    return *cached;
}

}  // namespace kiln::vm
