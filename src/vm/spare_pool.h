// SparePool: QEMUs started ahead for restores and fork children of a snapshot ("spares").
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "vm/snapshot_manifest.h"
#include "vm/vm.h"

namespace kiln::vm {

// What a spare of a snapshot taken with a NIC holds beside its QEMU: a NIC whose tap exists before
// the QEMU starts (QEMU inherits the tap fd at exec), and whatever keeps that NIC alive. Only the
// device is the vm layer's business; the pool's owner (kilnd: a sandbox network, docs/network.md)
// subclasses this and gets its object back from the restore that takes the spare. Destroyed
// after the spare's QEMU, when the spare is discarded or found stale.
class SpareNic {
public:
    virtual ~SpareNic() = default;
    virtual NetDevice device() const = 0;
};
// Makes the NIC of one spare; called on the pool's worker before that spare's QEMU starts. An error
// leaves no spare (the next restore makes its own NIC and QEMU).
using SpareNicSource = std::function<Result<std::unique_ptr<SpareNic>>()>;

// A spare is a QEMU started for one snapshot: its own id and run dir, a reflink of the snapshot's
// disk, the memory file mapped copy-on-write, QMP/console/agent connected, the state file's fd
// handed over and -incoming defer (launch_for_snapshot, nothing more). No vCPU has run and no page
// of guest RAM has been touched, so it holds no guest state; it costs one idle QEMU process: about
// 15 MiB PSS, 13 MiB of it private (smaps_rollup of the spare of `tiny` beside 5 of its clones,
// TCG; snapshot_bench counts ~14 MiB beside 20 clones of a 512 MiB guest). Count it in density
// figures (see pids()). A restore or fork given the pool takes the spare and skips
// QEMU's start-up (~40 ms under TCG); the restore still verifies the snapshot, and a spare whose
// snapshot files changed since it started is dropped.
//
// A warm spare (SparePool(true), kilnd's warm_spare) goes further, for restores only: its worker
// loads the snapshot's state, renews the guest's identity with throwaway values, runs a few of
// Kiln's own commands (never a tenant's: none has reached it) so that QEMU has translated the
// agent's init and exec paths and the guest's fork/exec, then stops the vCPUs. A restore that
// takes it only resumes it and renews the identity with the sandbox's own entropy, clock and name:
// under TCG a fresh QEMU translates every guest code path again, which is most of what a first
// command costs after a restore. It holds what that warm-up dirtied (guest pages copied from the
// memory file) and QEMU's translated code: its cost is counted in docs/benchmarks.md. A fork's
// child cannot use one (it loads the parent's stream): forks take a cold spare of the snapshot,
// started on first use (prepare_cold), so a snapshot may have one of each.
//
// At most one spare of each kind per snapshot directory. One worker thread (started on the first prepare())
// starts them, so a burst of restores never starts more than one QEMU at a time in the
// background. Whoever builds the pool (kilnd's serve command, a test, a benchmark) owns it; its
// destructor stops the worker and kills every spare's QEMU. Thread-safe.
class SparePool {
public:
    // warm: the spares prepare() starts are warm (see above); prepare_cold() ones never are.
    explicit SparePool(bool warm = false) : m_warm(warm) {}
    ~SparePool();
    SparePool(const SparePool&) = delete;
    SparePool& operator=(const SparePool&) = delete;

    // Queues the start of a spare for `snapshot_dir` (no-op if one exists or is queued). For a
    // snapshot taken with a NIC, `nic` makes each of its spares' NICs; it is remembered for the
    // directory (until discard), so later prepare() calls, such as a restore's refill, need not
    // pass it again. A NIC snapshot without a source gets no spare.
    void prepare(const std::string& snapshot_dir, SpareNicSource nic = {});
    // The same for a cold spare, whatever the pool's kind: what a fork's child needs.
    void prepare_cold(const std::string& snapshot_dir);
    // A spare for a restore of `snapshot_dir`, if there is one for this very snapshot (same manifest
    // id and files) and its QEMU is alive; null otherwise. A warm one is preferred, else a cold one.
    // Waits up to 2 s for one being started (it is closer to ready than a new QEMU). A spare with a
    // NIC goes only to a caller that takes its NIC (`nic` not null: it receives it), one without
    // only to a caller that does not. `warm` (if given) says which kind it is: a warm one is running
    // its loaded guest, stopped, and needs resume_warm_spare() instead of load_snapshot_state().
    std::unique_ptr<Vm> take(const std::string& snapshot_dir, const SnapshotManifest& manifest,
                             std::unique_ptr<SpareNic>* nic = nullptr, bool* warm = nullptr);
    // A cold spare of `snapshot_dir` (no NIC), for a fork's child; null if there is none.
    std::unique_ptr<Vm> take_cold(const std::string& snapshot_dir, const SnapshotManifest& manifest);
    // Stops the spares of `snapshot_dir` (every spare if empty), drops queued starts and forgets
    // the directory's NIC source; returns when their QEMUs are gone and their NICs destroyed.
    void discard(const std::string& snapshot_dir = {});
    // Whether `snapshot_dir` has a spare of either kind waiting, queued or starting: a snapshot the
    // pool's owner keeps spares for (a fork queues a cold one only for such a snapshot).
    bool keeps_spares_for(const std::string& snapshot_dir);
    // The QEMU pids of the spares waiting now.
    std::vector<pid_t> pids();

private:
    // Which files a snapshot directory held when its spare started (device, inode, size, mtime of
    // each), to notice one replaced or touched since.
    struct FileId {
        dev_t dev = 0;
        ino_t ino = 0;
        off_t size = 0;
        int64_t mtime_ns = 0;
        bool operator==(const FileId&) const = default;
    };
    struct SnapshotFileIds {
        std::optional<FileId> state, memory, disk;
        bool operator==(const SnapshotFileIds&) const = default;
    };
    static std::optional<FileId> file_id(const std::string& path);
    static SnapshotFileIds snapshot_file_ids(const std::string& snapshot_dir);

    struct Spare {
        std::unique_ptr<SpareNic> nic;  // declared first: destroyed after the QEMU that holds its tap
        std::unique_ptr<Vm> vm;
        std::string manifest_id;
        SnapshotFileIds files;
    };

    // A snapshot directory and whether its spare is warm.
    using Key = std::pair<std::string, bool>;

    void queue(Key key);
    std::unique_ptr<Vm> take_one(const Key& key, const SnapshotManifest& manifest, std::unique_ptr<SpareNic>* nic,
                                 bool wait);
    void run_worker();
    // A failed start leaves no spare; the next restore starts its own QEMU and reports any error.
    static std::optional<Spare> start(const Key& key, const SpareNicSource& nic);

    const bool m_warm;
    std::mutex m_mutex;  // guards everything below
    std::condition_variable m_cv;
    std::deque<Key> m_queue;  // spares to be started
    Key m_starting;           // the spare the worker is starting now (an empty dir: none)
    std::map<Key, Spare> m_spares;
    std::map<std::string, SpareNicSource> m_nic_sources;  // by snapshot dir, for NIC snapshots
    bool m_stop = false;
    std::thread m_worker;
};

}  // namespace kiln::vm
