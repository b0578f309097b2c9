// power_off: the end of the guest, as PID 1: stop every process, sync, remount / read-only, reboot (QEMU exits).
#pragma once

namespace kiln::agent {

// 1. SIGTERM to every process, up to 1 s for them to exit; 2. SIGKILL to the rest;
// 3. sync(); 4. remount / read-only, so the next boot replays no journal; 5. reboot(RB_AUTOBOOT),
// which ends QEMU (the kernel runs with reboot=t, QEMU with -no-reboot). Never returns.
[[noreturn]] void power_off();

}  // namespace kiln::agent
