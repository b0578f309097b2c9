// Accelerator detection from /sys/module and /dev/kvm, and the host TSC frequency.
#include "vm/accel.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/file_util.h"
#include "base/unique_fd.h"

namespace kiln::vm {

Result<AccelMode> parse_accel_mode(std::string_view text) {
    if (text == "auto") return AccelMode::Auto;
    if (text == "kvm") return AccelMode::Kvm;
    if (text == "tcg") return AccelMode::Tcg;
    return make_error(ErrorCode::InvalidArgument, "accel must be auto, kvm or tcg, not '" + std::string(text) + "'");
}

const char* accel_mode_name(AccelMode mode) {
    switch (mode) {
    case AccelMode::Auto: return "auto";
    case AccelMode::Kvm: return "kvm";
    case AccelMode::Tcg: return "tcg";
    }
    return "?";
}

const char* accel_name(Accel accel) { return accel == Accel::Kvm ? "kvm" : "tcg"; }

KvmProbe probe_kvm() {
    KvmProbe p;
    p.kvm_intel = path_exists("/sys/module/kvm_intel");
    p.kvm_amd = path_exists("/sys/module/kvm_amd");
    p.kvm_pvm = path_exists("/sys/module/kvm_pvm");
    p.dev_kvm_exists = path_exists("/dev/kvm");
    if (p.dev_kvm_exists) {
        UniqueFd fd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
        p.dev_kvm_opens = fd.valid();
        if (!fd) p.dev_kvm_error = std::strerror(errno);
    }
    return p;
}

namespace {

// Why KVM cannot be used, or empty when it can.
std::string kvm_unusable_reason(const KvmProbe& p) {
    if (!p.kvm_intel && !p.kvm_amd) {
        if (p.kvm_pvm)
            return "kvm_pvm is loaded but neither kvm_intel nor kvm_amd: /dev/kvm is PVM, which cannot run a "
                   "stock guest";
        if (p.dev_kvm_exists) return "/dev/kvm exists but neither kvm_intel nor kvm_amd is loaded";
        return "no hardware virtualization: neither kvm_intel nor kvm_amd is loaded and there is no /dev/kvm";
    }
    const char* module = p.kvm_intel ? "kvm_intel" : "kvm_amd";
    if (!p.dev_kvm_exists) return std::string(module) + " is loaded but /dev/kvm does not exist";
    if (!p.dev_kvm_opens) return std::string(module) + " is loaded but /dev/kvm cannot be opened: " + p.dev_kvm_error;
    return "";
}

}  // namespace

Result<AccelChoice> choose_accel(AccelMode mode, const KvmProbe& probe) {
    std::string why_not = kvm_unusable_reason(probe);
    switch (mode) {
    case AccelMode::Tcg: return AccelChoice{Accel::Tcg, "TCG was asked for (accel=tcg)"};
    case AccelMode::Kvm:
        if (!why_not.empty()) return make_error(ErrorCode::KvmUnavailable, "accel=kvm was asked for, but " + why_not);
        return AccelChoice{Accel::Kvm, "KVM was asked for (accel=kvm)"};
    case AccelMode::Auto:
        if (!why_not.empty()) return AccelChoice{Accel::Tcg, why_not + "; using TCG"};
        return AccelChoice{Accel::Kvm, std::string(probe.kvm_intel ? "kvm_intel" : "kvm_amd") +
                                           " is loaded and /dev/kvm opens; using KVM"};
    }
    return make_error(ErrorCode::InvalidArgument, "unknown accel mode");
}

Result<uint64_t> parse_cpuinfo_khz(const std::string& cpuinfo) {
    size_t pos = 0;
    while (pos < cpuinfo.size()) {
        size_t end = cpuinfo.find('\n', pos);
        if (end == std::string::npos) end = cpuinfo.size();
        std::string line = cpuinfo.substr(pos, end - pos);
        pos = end + 1;
        if (line.rfind("cpu MHz", 0) != 0) continue;
        size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        char* stop = nullptr;
        double mhz = std::strtod(line.c_str() + colon + 1, &stop);
        if (stop == line.c_str() + colon + 1 || mhz <= 0 || mhz > 100000) continue;
        return static_cast<uint64_t>(mhz * 1000.0 + 0.5);
    }
    return make_error(ErrorCode::NotFound, "no usable 'cpu MHz' line in /proc/cpuinfo");
}

Result<uint64_t> host_tsc_khz() {
    if (auto text = read_file("/sys/devices/system/cpu/cpu0/tsc_freq_khz", 64); text.ok()) {
        char* stop = nullptr;
        unsigned long long khz = std::strtoull(text->c_str(), &stop, 10);
        if (stop != text->c_str() && khz > 0) return static_cast<uint64_t>(khz);
    }
    auto cpuinfo = TRY(read_file("/proc/cpuinfo", 16 * 1024 * 1024));
    return parse_cpuinfo_khz(cpuinfo);
}

}  // namespace kiln::vm
