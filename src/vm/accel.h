// Chooses the accelerator (KVM or TCG) for a guest and says why; reads the host TSC frequency.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace kiln::vm {

enum class AccelMode { Auto, Kvm, Tcg };  // what the user asked for
enum class Accel { Kvm, Tcg };            // what a VM runs with

Result<AccelMode> parse_accel_mode(std::string_view text);
const char* accel_mode_name(AccelMode mode);
const char* accel_name(Accel accel);  // "kvm" / "tcg"

// What the host offers, read from /sys/module and /dev/kvm.
struct KvmProbe {
    bool kvm_intel = false;  // /sys/module/kvm_intel
    bool kvm_amd = false;    // /sys/module/kvm_amd
    bool kvm_pvm = false;    // /sys/module/kvm_pvm: PVM, which runs only PVM-patched guests
    bool dev_kvm_exists = false;
    bool dev_kvm_opens = false;  // open("/dev/kvm", O_RDWR) worked
    std::string dev_kvm_error;   // why it did not
};

struct AccelChoice {
    Accel accel = Accel::Tcg;
    std::string reason;  // one line for humans: doctor, logs, metrics
};

KvmProbe probe_kvm();
// Pure decision, unit-tested: Auto picks KVM only with kvm_intel/kvm_amd and a usable /dev/kvm;
// Kvm on a host without them is an error carrying the same reason.
Result<AccelChoice> choose_accel(AccelMode mode, const KvmProbe& probe);
inline Result<AccelChoice> choose_accel(AccelMode mode) { return choose_accel(mode, probe_kvm()); }

// Host TSC frequency in kHz, for the guest's tsc_early_khz= (needed under TCG: PIT calibration can
// hang on a busy host). From /sys/devices/system/cpu/cpu0/tsc_freq_khz, else /proc/cpuinfo "cpu MHz".
Result<uint64_t> host_tsc_khz();
// The "cpu MHz" line of a /proc/cpuinfo text, in kHz.
Result<uint64_t> parse_cpuinfo_khz(const std::string& cpuinfo);

}  // namespace kiln::vm
