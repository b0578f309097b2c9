// Reconcile at start (see reconcile.h).
#include "daemon/sandboxes/reconcile.h"

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/json_log.h"
#include "base/unique_fd.h"
#include "daemon/data_dir.h"
#include "daemon/net/guest_addressing.h"
#include "daemon/net/netns.h"
#include "daemon/net/sandbox_network.h"
#include "daemon/net/spare_networks.h"
#include "daemon/sandboxes/ids.h"

namespace kiln::daemon {

std::string read_cmdline(pid_t pid) {
    auto text = read_file("/proc/" + std::to_string(pid) + "/cmdline", 1 << 20);
    return text.ok() ? *text : std::string();
}

std::vector<pid_t> find_qemu_processes(const std::string& needle) {
    std::vector<pid_t> out;
    DIR* dir = ::opendir("/proc");
    if (!dir) return out;
    while (struct dirent* e = ::readdir(dir)) {
        char* end = nullptr;
        long pid = std::strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0) continue;
        std::string cmd = read_cmdline(static_cast<pid_t>(pid));
        std::string argv0 = cmd.substr(0, cmd.find('\0'));
        if (argv0.find("qemu-system") == std::string::npos) continue;
        if (cmd.find(needle) != std::string::npos) out.push_back(static_cast<pid_t>(pid));
    }
    ::closedir(dir);
    return out;
}

bool kill_if_cmdline_contains(pid_t pid, const std::string& needle) {
    if (pid <= 0 || needle.empty()) return false;
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) return false;  // gone
    // Checked after the pidfd is held: from here on the pidfd names this very process.
    if (read_cmdline(pid).find(needle) == std::string::npos) return false;
    if (::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0) != 0) return false;
    struct pollfd p {pidfd.get(), POLLIN, 0};
    (void)::poll(&p, 1, 5000);  // readable once it has exited
    return true;
}

Result<ReconcileReport> reconcile(Store& store, const std::string& data_dir, const std::string& host) {
    ReconcileReport report;
    const std::string vms = data_dir + "/vms";
    int64_t now = now_unix_ms();

    // 1. This host's live records: this kilnd has no VM yet, so each is lost (or, if it was being
    //    deleted, deleted). A row the store cannot read (a state it does not know) is logged by the
    //    store and left as it is: nothing here can tell what it was.
    //    Paused ones have no VM: they stay paused, resumable from their snapshot (docs/pause.md),
    //    and so does one whose resume was cut short; without its snapshot either is lost.
    auto records = TRY(store.list_host_sandboxes(host));
    std::set<std::string> paused;  // their snapshot directories
    for (auto& r : records) {
        SandboxInfo& i = r.info;
        const std::string pause_dir = paused_dir(data_dir, i.id);
        const bool has_snapshot = std::filesystem::is_directory(pause_dir);
        if (i.state() == SandboxState::Paused && has_snapshot) {
            paused.insert(pause_dir);
            continue;
        }
        if (!is_live(i.state()) && i.state() != SandboxState::Deleting && i.state() != SandboxState::Paused) continue;
        if (i.qemu_pid > 0 && !r.run_dir.empty() && kill_if_cmdline_contains(i.qemu_pid, r.run_dir + "/"))
            report.qemu_killed++;
        if (i.state() == SandboxState::Resuming && has_snapshot) {
            if (!i.move_to(SandboxState::Paused)) continue;
            i.qemu_pid = 0;
            paused.insert(pause_dir);
            report.kept_paused++;
            TRY(store.update_sandbox(r));
            continue;
        }
        const bool was_paused = i.state() == SandboxState::Paused;
        if (i.state() == SandboxState::Deleting) {
            if (!i.move_to(SandboxState::Deleted)) continue;
            report.marked_deleted++;
        } else {
            if (!i.move_to(SandboxState::Lost)) continue;
            i.error = was_paused ? "kilnd restarted and the paused sandbox's snapshot is gone"
                                                         : "kilnd restarted and did not reattach the VM";
            report.marked_lost++;
        }
        i.ended_at_ms = now;
        i.qemu_pid = 0;
        TRY(store.update_sandbox(r));
    }

    // 2. Any QEMU still running from our vms/ folder has no owner now: a create cut short after
    //    QEMU started but before its pid was recorded, or a spare.
    for (pid_t pid : find_qemu_processes(vms + "/")) {
        if (kill_if_cmdline_contains(pid, vms + "/")) report.orphan_qemu_killed++;
    }

    // 3. No sandbox is live, so no run dir belongs to one.
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(vms, ec)) {
        if (remove_tree(entry.path().string()).ok()) report.run_dirs_removed++;
    }

    // 4. Snapshot directories: half-written ones, and those whose record was never written.
    std::set<std::string> known;
    for (const auto& s : TRY(store.list_snapshots(0))) known.insert(snapshot_dir(data_dir, s.info.id));
    for (const auto& entry : std::filesystem::directory_iterator(data_dir + "/snapshots", ec)) {
        std::string path = entry.path().string();
        if (path.size() > 8 && path.compare(path.size() - 8, 8, ".partial") == 0) {
            if (remove_tree(path).ok()) report.partial_dirs_removed++;
        } else if (!known.count(path)) {
            if (remove_tree(path).ok()) report.snapshot_dirs_removed++;
        }
    }
    //    Paused sandboxes' snapshots: only those of records still paused stay.
    for (const auto& entry : std::filesystem::directory_iterator(data_dir + "/paused", ec)) {
        std::string path = entry.path().string();
        if (!paused.count(path) && remove_tree(path).ok()) report.snapshot_dirs_removed++;
    }
    for (const auto& entry : std::filesystem::directory_iterator(data_dir + "/templates", ec)) {
        std::string path = entry.path().string();
        if (path.size() > 8 && path.compare(path.size() - 8, 8, ".partial") == 0) {
            if (remove_tree(path).ok()) report.partial_dirs_removed++;
        }
    }

    // 5. Networks: the namespaces and veths of this host's sandboxes with a NIC, none of which
    //    is live now (those another host recorded lost while this one was away included). Only
    //    ours: kiln-* names of another kilnd on this machine are not touched.
    std::vector<std::string> networked;
    for (const auto& r : records)
        if (r.info.has_nic) networked.push_back(r.info.id);
    // Template bakes and snapshot helpers have no records: theirs are named bake-<tag>-* and
    // snap-<tag>-* after this data dir (net::local_network_prefix). Names from before the tag
    // (bake-<8 hex>, snap-<12 hex>: one dash) were made by an older kilnd and are swept too.
    const std::string netns_prefix = net::kNetnsPrefix;
    const std::string bake_prefix = net::local_network_prefix("bake", data_dir);
    const std::string snap_prefix = net::local_network_prefix("snap", data_dir);
    for (const auto& name : net::list_named_netns(netns_prefix)) {
        std::string id = name.substr(netns_prefix.size());
        bool legacy = (id.rfind("bake-", 0) == 0 || id.rfind("snap-", 0) == 0) && std::count(id.begin(), id.end(), '-') == 1;
        if (legacy || id.rfind(bake_prefix, 0) == 0 || id.rfind(snap_prefix, 0) == 0) networked.push_back(std::move(id));
    }
    net::OrphanSweep sweep = net::NetworkManager::cleanup_sandboxes(networked);
    report.netns_removed = sweep.netns_removed;
    report.veths_removed = sweep.veths_removed;
    for (const auto& e : sweep.errors) log::warn("reconcile: network clean-up", {{"error", e}});
    //    The networks of this kilnd's spare QEMUs (killed in step 2): named by a prefix of this
    //    data dir's, so another kilnd's spares keep theirs. One that a create had begun to take
    //    over has the sandbox's veth name and was swept above by its record.
    std::vector<std::string> spares;
    const std::string spare_prefix = net::spare_network_prefix(data_dir);
    for (const auto& name : net::list_named_netns(netns_prefix + spare_prefix)) spares.push_back(name.substr(netns_prefix.size()));
    net::OrphanSweep spare_sweep = net::NetworkManager::cleanup_sandboxes(spares);
    report.spare_netns_removed = spare_sweep.netns_removed;
    report.spare_veths_removed = spare_sweep.veths_removed;
    for (const auto& e : spare_sweep.errors) log::warn("reconcile: spare network clean-up", {{"error", e}});

    log::info("reconciled", {{"marked_lost", report.marked_lost},
                             {"netns_removed", report.netns_removed},
                             {"veths_removed", report.veths_removed},
                             {"spare_netns_removed", report.spare_netns_removed},
                             {"spare_veths_removed", report.spare_veths_removed},
                             {"marked_deleted", report.marked_deleted},
                             {"qemu_killed", report.qemu_killed},
                             {"orphan_qemu_killed", report.orphan_qemu_killed},
                             {"run_dirs_removed", report.run_dirs_removed},
                             {"partial_dirs_removed", report.partial_dirs_removed},
                             {"snapshot_dirs_removed", report.snapshot_dirs_removed},
                             {"kept_paused", report.kept_paused}});
    return report;
}

}  // namespace kiln::daemon
