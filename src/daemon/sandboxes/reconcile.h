// Reconcile at kilnd start: no VM survives a restart, so every live record of this host is marked
// lost (paused ones have no VM and stay paused: docs/pause.md), its QEMU killed (only if the pid's command line names its run dir), orphan QEMUs and files
// removed, and the networks (namespace, veth) of this host's sandboxes that a crash left behind
// deleted. Another host's records, QEMUs and networks (a fleet on one store, two kilnds on one
// machine) are never touched: records by their host, everything else by this data dir's names.
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

#include "base/result.h"
#include "daemon/store/store.h"

namespace kiln::daemon {

struct ReconcileReport {
    int marked_lost = 0;          // live records whose VM is gone or was killed; paused ones without their snapshot
    int kept_paused = 0;          // resuming records put back to paused (their snapshot is intact)
    int marked_deleted = 0;       // deleting records (their delete finishes now)
    int qemu_killed = 0;          // a live record's QEMU, still running
    int orphan_qemu_killed = 0;   // QEMUs in $DATA/vms/ with no record (a crash mid-create, spares)
    int run_dirs_removed = 0;
    int partial_dirs_removed = 0; // half-written snapshot and template directories
    int snapshot_dirs_removed = 0;// snapshot directories without a record (paused/ ones too)
    int netns_removed = 0;        // network namespaces of sandboxes of this store that ended
    int veths_removed = 0;        // and their host veths (docs/network.md)
    int spare_netns_removed = 0;  // namespaces of this kilnd's spare QEMUs (spare-<tag>-*)
    int spare_veths_removed = 0;  // and their host veths
};

// Must run before anything of this kilnd starts a QEMU (the bake, spares, creates). `host` is this
// kilnd's host_name (its rows from before hosts existed are claimed first: HostRegistry).
Result<ReconcileReport> reconcile(Store& store, const std::string& data_dir, const std::string& host);

// The NUL-separated command line of `pid` ("" if gone).
std::string read_cmdline(pid_t pid);
// Pids of qemu-system processes whose command line contains `needle`.
std::vector<pid_t> find_qemu_processes(const std::string& needle);
// SIGKILL through a pidfd, only if the command line still contains `needle` when the pidfd is
// held (so a recycled pid is never hit); waits up to 5 s for the process to end. True if killed.
bool kill_if_cmdline_contains(pid_t pid, const std::string& needle);

}  // namespace kiln::daemon
