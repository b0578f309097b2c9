// Snapshot, restore and fork, driven through QMP migration to and from files passed as fds.
#include "vm/snapshot.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/errno_error.h"
#include "base/file_util.h"
#include "base/random.h"
#include "base/sha256.h"
#include "base/unix_socket.h"
#include "vm/guest_artifacts.h"
#include "vm/qemu_version.h"

namespace kiln::vm {
namespace {

constexpr const char* kMigrateFdName = "kiln-migrate";

int64_t since_ms(Clock::time_point start) {
    return std::chrono::duration_cast<Millis>(Clock::now() - start).count();
}

// x-ignore-shared as asked, and MIGRATION events on, so completion is awaited without polling.
Status set_capabilities(QmpClient& qmp, bool ignore_shared) {
    json caps = json::array({json{{"capability", "x-ignore-shared"}, {"state", ignore_shared}},
                             json{{"capability", "events"}, {"state", true}}});
    auto r = qmp.execute("migrate-set-capabilities", json{{"capabilities", caps}});
    if (!r.ok()) return std::move(r).error();
    return ok_status();
}

Status pass_fd(QmpClient& qmp, int fd) {
    auto r = qmp.execute_with_fd("getfd", json{{"fdname", kMigrateFdName}}, fd);
    if (!r.ok()) return std::move(r).error();
    return ok_status();
}

// QEMU throttles a migration to 128 MiB/s and iterates until the rest fits its 300 ms downtime
// limit, even for a stopped VM, which then waits for every byte: a 24 MB fork stream took ~140 ms
// instead of ~50. Our VMs are stopped when we migrate them, so neither limit buys anything.
Status unthrottle(QmpClient& qmp) {
    auto r = qmp.execute("migrate-set-parameters",
                         json{{"max-bandwidth", int64_t(1) << 40}, {"downtime-limit", int64_t(100000)}});
    if (!r.ok()) return std::move(r).error();
    return ok_status();
}

// cont on a migration source. QEMU announces "completed" a moment before it leaves the
// finish-migrate state, and refuses cont in between ("Migration is not finalized yet").
Status resume_source(QmpClient& qmp) {
    auto deadline = Clock::now() + Millis(5000);
    for (;;) {
        auto r = qmp.execute("cont");
        if (r.ok()) return ok_status();
        if (r.error().code != ErrorCode::QmpError || r.error().message.find("not finalized") == std::string::npos ||
            Clock::now() >= deadline)
            return std::move(r).error();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

// Drops MIGRATION events left over from an earlier migration of this QEMU.
void drop_migration_events(QmpClient& qmp) {
    while (qmp.wait_event("MIGRATION", Millis(0)).ok()) {
    }
}

// Waits for the MIGRATION event that ends the current migration and returns its status
// ("completed", "failed" or "cancelled"), or the QMP error (vm_gone, timeout).
Result<std::string> wait_migration_end(QmpClient& qmp, Clock::time_point deadline) {
    for (;;) {
        auto ev = qmp.wait_event("MIGRATION", Millis(std::max(1, remaining_ms(deadline))));
        if (!ev.ok()) return std::move(ev).error();
        std::string status = ev->value("data", json::object()).value("status", "");
        if (status == "completed" || status == "failed" || status == "cancelled") return status;
    }
}

// Everything before an outgoing migration that need not wait for the VM to stop.
Status prepare_migration(QmpClient& qmp, bool ignore_shared) {
    TRY(unthrottle(qmp));
    TRY(set_capabilities(qmp, ignore_shared));
    drop_migration_events(qmp);
    return ok_status();
}

// Starts writing the migration stream of a prepared VM into `fd`; with x-ignore-shared, shared RAM
// is left out.
Status start_migration(QmpClient& qmp, int fd) {
    TRY(pass_fd(qmp, fd));
    auto started = qmp.execute("migrate", json{{"uri", std::string("fd:") + kMigrateFdName}});
    if (!started.ok()) return std::move(started).error();
    return ok_status();
}

// Waits for the migration started by start_migration; cancels it on timeout.
Status finish_migration(QmpClient& qmp, Clock::time_point deadline) {
    auto status = wait_migration_end(qmp, deadline);
    if (!status.ok()) {
        if (status.error().code == ErrorCode::Timeout) {
            (void)qmp.execute("migrate_cancel");
            return make_error(ErrorCode::Timeout, "writing the VM state took too long");
        }
        return std::move(status).error();
    }
    if (*status == "completed") return ok_status();
    auto info = qmp.execute("query-migrate");
    return make_error(ErrorCode::SnapshotFailed, "QEMU migration " + *status + ": " +
                                             (info.ok() ? info->value("error-desc", "no reason given") : info.error().message));
}

Status migrate_to_fd(QmpClient& qmp, int fd, bool ignore_shared, Millis timeout) {
    TRY(prepare_migration(qmp, ignore_shared));
    TRY(start_migration(qmp, fd));
    return finish_migration(qmp, deadline_after(timeout));
}

Status migrate_to_file(QmpClient& qmp, const std::string& path, bool ignore_shared, Millis timeout) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) return errno_error("create " + path);
    return migrate_to_fd(qmp, fd.get(), ignore_shared, timeout);  // QEMU holds its own copy of fd
}

// Waits for an incoming migration to end and runs the loaded VM. A stream QEMU rejects makes QEMU
// exit: the error then quotes qemu.log.
Status finish_incoming(Vm& vm, Clock::time_point deadline) {
    QmpClient& qmp = vm.qmp();
    auto status = wait_migration_end(qmp, deadline);
    if (!status.ok()) {
        if (status.error().code == ErrorCode::Timeout) {
            auto mig = qmp.execute("query-migrate");
            return make_error(ErrorCode::Timeout, "loading the device state timed out (migration " +
                                             (mig.ok() ? mig->dump() : mig.error().message) + ")");
        }
        return make_error(ErrorCode::RestoreFailed, "loading the device state failed: " + vm.gone_error().message);
    }
    if (*status != "completed")
        return make_error(ErrorCode::RestoreFailed, "loading the device state ended '" + *status + "': " + vm.gone_error().message);
    // The source was stopped when its state was written, and QEMU carries that run state over: the
    // loaded VM waits for a cont (a no-op if it runs already).
    auto cont = qmp.execute("cont");
    if (!cont.ok()) return make_error(ErrorCode::RestoreFailed, "cont after loading: " + cont.error().message);
    return ok_status();
}

// Loads the migration stream from the fd already passed to a QEMU started with -incoming defer
// (capabilities set), and waits until the vCPUs run.
Status start_incoming(Vm& vm, Millis timeout) {
    auto started = vm.qmp().execute("migrate-incoming", json{{"uri", std::string("fd:") + kMigrateFdName}});
    if (!started.ok()) return make_error(ErrorCode::RestoreFailed, "migrate-incoming: " + started.error().message);
    return finish_incoming(vm, deadline_after(timeout));
}

Status migrate_from_fd(Vm& vm, int fd, bool ignore_shared, Millis timeout) {
    TRY(set_capabilities(vm.qmp(), ignore_shared));
    TRY(pass_fd(vm.qmp(), fd));
    return start_incoming(vm, timeout);
}

Status migrate_from_file(Vm& vm, const std::string& path, bool ignore_shared, Millis timeout) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno_error("open " + path);
    return migrate_from_fd(vm, fd.get(), ignore_shared, timeout);
}

Result<SnapshotHost> this_host() {
    auto accel = choose_accel(AccelMode::Auto);
    if (!accel.ok()) return std::move(accel).error();
    auto qemu = TRY(qemu_info());
    return SnapshotHost{accel_name(accel->accel), qemu.version.to_string()};
}

// The config shared by restores and fork children: the source's shape, this VM's run dir.
VmConfig child_config(const VmConfig& source, const std::string& run_dir) {
    VmConfig config = source;
    config.run_dir = run_dir;
    config.rootfs_path = RunPaths::in(run_dir).disk;
    config.incoming_defer = true;
    config.start_paused = false;  // run as soon as the device state is in
    config.memory_file.reset();
    config.net.reset();  // the source's tap fd is the source's: a child gets its own
    return config;
}

Result<std::string> new_run_dir(const std::string& id) {
    auto dir = TRY(run_dir_for(id));
    TRY(make_dirs(vms_dir(), 0700));
    if (::mkdir(dir.c_str(), 0700) != 0) return errno_error("create run dir " + dir);
    return dir;
}

// The fork's migration stream goes straight from the parent QEMU to the child's through one Unix
// stream socket pair whose send buffer holds the whole stream of a typical guest (~25 MB for 256 MiB
// of RAM): the parent writes at its own pace and resumes without waiting for the child to load, and
// nothing is copied in this process. Measured under TCG on 2 cores (fork to child exec-ready / parent
// paused, p50): a relay thread between two pipes, as before, 161 / 79 ms (its fresh 1 MiB buffers cost
// ~30 ms of CPU per fork in page faults, memset and copies); one pipe, 152 / 104 ms (a pipe cannot
// grow past /proc/sys/fs/pipe-max-size, 1 MiB, without CAP_SYS_RESOURCE, so the parent waited for
// the child); this socket pair, 141 / 48 ms. The kernel doubles the size asked for (its bookkeeping)
// and allocates only what is in flight, freed as the child reads. SO_SNDBUFFORCE takes CAP_NET_ADMIN
// (kilnd has it when it runs networks); without it the buffer is capped at net.core.wmem_max
// (doubled) and a parent with more than that to write waits for the child: a longer pause, nothing
// worse. Either end closing ends the other's transfer (EPIPE or EOF), never a hang.
constexpr int kForkStreamBufferBytes = 64 << 20;

struct StreamChannel {
    UniqueFd read_end, write_end;
};

Result<StreamChannel> make_stream_channel() {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) return errno_error("socketpair");
    StreamChannel channel{UniqueFd(ends[0]), UniqueFd(ends[1])};
    int bytes = kForkStreamBufferBytes;
    if (::setsockopt(channel.write_end.get(), SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0)
        (void)::setsockopt(channel.write_end.get(), SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    return channel;
}

// Creates `dst` as a reflink of `src`; false (and no dst) where reflinks do not work.
bool try_reflink(const std::string& src, const std::string& dst) {
    UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) return false;
    UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!out) return false;
    if (::ioctl(out.get(), FICLONE, in.get()) == 0) return true;
    out.reset();
    ::unlink(dst.c_str());
    return false;
}

// Replaces the content of the existing file `dst` with a reflink of `src`, keeping dst's inode, so a
// QEMU that has `dst` open sees the new content.
Status reclone_file(const std::string& src, const std::string& dst) {
    UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) return errno_error("open " + src);
    UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CLOEXEC));
    if (!out) return errno_error("open " + dst);
    if (::ioctl(out.get(), FICLONE, in.get()) != 0) return errno_error("reflink " + src + " onto " + dst);
    return ok_status();
}

// Which file a path named, to notice a snapshot file replaced after a spare QEMU opened it.
struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileId&) const = default;
};

std::optional<FileId> file_id(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return FileId{st.st_dev, st.st_ino, st.st_size, int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

struct SnapshotFileIds {
    std::optional<FileId> state, memory, disk;
    bool operator==(const SnapshotFileIds&) const = default;
};

SnapshotFileIds snapshot_file_ids(const std::string& dir) {
    return {file_id(dir + "/" + kStateFileName), file_id(dir + "/" + kMemoryFileName), file_id(dir + "/" + kDiskFileName)};
}

// Steps 2-3 of a restore, all that can happen before the device state loads: the run dir, a
// reflink of the snapshot's disk, QEMU started with the memory file mapped copy-on-write and
// -incoming defer, QMP/console/agent connected, migration capabilities set and the state file's
// fd handed to QEMU. After this only migrate-incoming is left (load_snapshot_state).
Result<std::unique_ptr<Vm>> launch_for_snapshot(const std::string& snapshot_dir, const SnapshotManifest& manifest,
                                                const KernelArtifact& kernel, const std::string& id,
                                                const std::optional<NetDevice>& net = std::nullopt) {
    std::string run_dir = TRY(new_run_dir(id));
    RunPaths paths = RunPaths::in(run_dir);
    if (auto c = clone_file(snapshot_dir + "/" + kDiskFileName, paths.disk); !c.ok()) {
        (void)remove_tree(run_dir);
        return std::move(c).error();
    }
    auto qemu = qemu_info();
    if (!qemu.ok()) {
        (void)remove_tree(run_dir);
        return std::move(qemu).error();
    }
    VmConfig config;
    config.qemu_binary = qemu->binary;
    config.sandbox = qemu->sandbox;
    config.name = "kiln-" + id;
    config.kernel_path = kernel.path;  // not booted (incoming); recorded for snapshots of this VM
    config.vcpus = manifest.vcpus;
    config.memory_mib = manifest.memory_mib;
    config.accel = manifest.accel == "kvm" ? Accel::Kvm : Accel::Tcg;
    config.disk_cache = DiskCache::Unsafe;
    if (auto khz = host_tsc_khz(); khz.ok()) config.tsc_khz = *khz;
    config = child_config(config, run_dir);
    config.memory_file = MemoryFile{snapshot_dir + "/" + kMemoryFileName, /*share=*/false};
    config.net = net;
    auto vm = TRY(Vm::launch(config, id));
    UniqueFd state(::open((snapshot_dir + "/" + kStateFileName).c_str(), O_RDONLY | O_CLOEXEC));
    if (!state) return errno_error("open " + snapshot_dir + "/" + kStateFileName);
    TRY(set_capabilities(vm->qmp(), /*ignore_shared=*/true));
    TRY(pass_fd(vm->qmp(), state.get()));
    return vm;
}

// Step 4 of a restore: the device state from the fd passed by launch_for_snapshot; RAM is the mapped file.
Status load_snapshot_state(Vm& vm, Millis timeout) { return start_incoming(vm, timeout); }

// QEMUs started ahead for restores ("spares"), at most one per snapshot directory. A spare has
// done launch_for_snapshot and nothing else: no vCPU has run and no page of guest RAM has been
// touched, so it holds no guest state; it costs its QEMU process (about 10 MiB of private memory
// beside the shared QEMU binary). One worker thread starts them, so a burst of restores never
// starts more than one QEMU at a time in the background.
class SparePool {
public:
    static SparePool& get() {
        static SparePool pool;
        return pool;
    }

    // The spare for `dir`, if there is one for this very snapshot (same manifest id and files) and
    // its QEMU is alive. Waits for one being started (it is closer to ready than a new QEMU).
    std::unique_ptr<Vm> take(const std::string& dir, const SnapshotManifest& manifest) {
        std::unique_ptr<Vm> vm;
        Spare spare;
        {
            std::unique_lock lock(m_mutex);
            m_cv.wait_for(lock, Millis(2000), [&] { return m_starting != dir; });
            auto it = m_spares.find(dir);
            if (it == m_spares.end()) return nullptr;
            spare = std::move(it->second);
            m_spares.erase(it);
        }
        if (spare.manifest_id != manifest.id || snapshot_file_ids(dir) != spare.files || !spare.vm->qmp().connected() ||
            spare.vm->wait_exit(Millis(0)))
            return nullptr;  // stale or dead: destroyed here
        return std::move(spare.vm);
    }

    // Queues the start of a spare for `dir` (no-op if one exists or is queued).
    void prepare(const std::string& dir) {
        std::lock_guard lock(m_mutex);
        if (m_spares.count(dir) || m_starting == dir) return;
        for (const auto& queued : m_queue)
            if (queued == dir) return;
        m_queue.push_back(dir);
        if (!m_worker.joinable()) m_worker = std::thread([this] { run(); });
        m_cv.notify_all();
    }

    // Stops the spares of `dir` (every spare if empty); returns when their QEMUs are gone.
    void discard(const std::string& dir) {
        std::vector<Spare> doomed;
        {
            std::unique_lock lock(m_mutex);
            std::erase_if(m_queue, [&](const std::string& q) { return dir.empty() || q == dir; });
            m_cv.wait(lock, [&] { return m_starting.empty() || (!dir.empty() && m_starting != dir); });
            for (auto it = m_spares.begin(); it != m_spares.end();) {
                if (dir.empty() || it->first == dir) {
                    doomed.push_back(std::move(it->second));
                    it = m_spares.erase(it);
                } else {
                    ++it;
                }
            }
        }
    }

    std::vector<pid_t> pids() {
        std::lock_guard lock(m_mutex);
        std::vector<pid_t> out;
        for (const auto& [dir, spare] : m_spares) out.push_back(spare.vm->pid());
        return out;
    }

    ~SparePool() {
        {
            std::lock_guard lock(m_mutex);
            m_stop = true;
            m_queue.clear();
            m_cv.notify_all();
        }
        if (m_worker.joinable()) m_worker.join();
        m_spares.clear();
    }

private:
    struct Spare {
        std::unique_ptr<Vm> vm;
        std::string manifest_id;
        SnapshotFileIds files;
    };

    void run() {
        std::unique_lock lock(m_mutex);
        for (;;) {
            m_cv.wait(lock, [&] { return m_stop || !m_queue.empty(); });
            if (m_stop) return;
            std::string dir = std::move(m_queue.front());
            m_queue.pop_front();
            m_starting = dir;
            lock.unlock();
            auto spare = start(dir);
            lock.lock();
            m_starting.clear();
            if (spare && !m_stop) m_spares[dir] = std::move(*spare);
            m_cv.notify_all();
            if (spare && m_stop) {
                lock.unlock();
                spare.reset();
                lock.lock();
            }
        }
    }

    // A failed start leaves no spare; the next restore starts its own QEMU and reports any error.
    static std::optional<Spare> start(const std::string& dir) {
        SnapshotFileIds files = snapshot_file_ids(dir);
        auto manifest = load_and_verify(dir, VerifyLevel::Sizes);
        if (!manifest.ok()) return std::nullopt;
        auto kernel = find_kernel();
        auto id = random_hex(6);
        if (!kernel.ok() || !id.ok()) return std::nullopt;
        auto vm = launch_for_snapshot(dir, *manifest, *kernel, *id);
        if (!vm.ok()) return std::nullopt;
        if (snapshot_file_ids(dir) != files) return std::nullopt;  // changed while we started
        return Spare{std::move(*vm), manifest->id, files};
    }

    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<std::string> m_queue;
    std::string m_starting;  // the dir whose spare the worker is starting
    std::map<std::string, Spare> m_spares;
    bool m_stop = false;
    std::thread m_worker;
};

}  // namespace

Result<SnapshotManifest> take_snapshot(Vm& vm, const SnapshotRequest& request, SnapshotTimings* timings) {
    auto start = Clock::now();
    SnapshotTimings t;
    const VmConfig& config = vm.config();
    if (!config.memory_file || !config.memory_file->share)
        return make_error(ErrorCode::NotSnapshottable,
                          "this VM's RAM is not a shared memory file; boot it with snapshottable memory to snapshot it");
    if (path_exists(request.dir)) return make_error(ErrorCode::Conflict, "snapshot directory " + request.dir + " already exists");
    std::string tmp = request.dir + ".partial";
    (void)remove_tree(tmp);
    TRY(make_dirs(tmp, 0700));
    auto cleanup_tmp = [&] { (void)remove_tree(tmp); };

    // 1. The guest syncs its file systems and refuses new work until the next init.
    if (auto st = prepare_migration(vm.qmp(), /*ignore_shared=*/true); !st.ok()) {
        cleanup_tmp();
        return make_error(ErrorCode::SnapshotFailed, "preparing the migration: " + st.error().message);
    }
    if (auto st = vm.agent().freeze(); !st.ok()) {
        cleanup_tmp();
        return make_error(ErrorCode::SnapshotFailed, "agent freeze: " + st.error().message);
    }
    t.freeze_ms = since_ms(start);

    // 2-4. Everything that must see one consistent instant happens while the vCPUs are stopped.
    auto paused_at = Clock::now();
    auto fail = [&](const Error& e) -> Error {
        cleanup_tmp();
        if (request.resume) {
            (void)resume_source(vm.qmp());
            (void)vm.renew_identity();
        }
        return make_error(e.code == ErrorCode::VmGone ? ErrorCode::VmGone : ErrorCode::SnapshotFailed, "snapshot: " + e.message);
    };
    if (auto r = vm.qmp().execute("stop"); !r.ok()) return fail(r.error());
    {
        std::string path = tmp + "/" + kStateFileName;
        UniqueFd state(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (!state) return fail(errno_error("create " + path));
        if (auto st = start_migration(vm.qmp(), state.get()); !st.ok()) return fail(st.error());
        if (auto st = finish_migration(vm.qmp(), deadline_after(Millis(60000))); !st.ok()) return fail(st.error());
    }
    t.state_ms = since_ms(paused_at);
    if (auto c = clone_file(config.memory_file->path, tmp + "/" + kMemoryFileName); !c.ok()) return fail(c.error());
    if (auto c = clone_file(config.rootfs_path, tmp + "/" + kDiskFileName); !c.ok()) return fail(c.error());
    t.clone_ms = since_ms(paused_at) - t.state_ms;

    // 6 (early). The VM runs on while the manifest's checksums are computed from the clones.
    if (request.resume) {
        if (auto st = resume_source(vm.qmp()); !st.ok()) return fail(st.error());
        t.paused_ms = since_ms(paused_at);
        if (auto st = vm.renew_identity(); !st.ok()) return fail(st.error());
    } else {
        t.paused_ms = since_ms(paused_at);
    }

    // 5. The manifest describes exactly the files in the directory.
    SnapshotManifest m;
    m.id = request.id.empty() ? "snap-" + TRY(random_hex(8)) : request.id;
    m.parent_id = vm.guest().snapshot_id;
    m.created_unix_ms = wall_clock_ns() / 1000000;
    m.kernel_release = vm.guest().kernel_release;
    m.image_name = vm.guest().image_name;
    m.image_key = vm.guest().image_key;
    m.vcpus = config.vcpus;
    m.memory_mib = config.memory_mib;
    m.accel = accel_name(config.accel);
    m.qemu_version = TRY(qemu_info()).version.to_string();
    m.nic = config.net.has_value();
    auto describe = [&](const char* name, SnapshotFileInfo& info, bool hash) -> Status {
        std::string path = tmp + "/" + name;
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) return errno_error("stat " + path);
        info.size = static_cast<uint64_t>(st.st_size);
        if (hash) info.sha256 = TRY(sha256_file_hex(path));
        return ok_status();
    };
    Status described = describe(kStateFileName, m.state, true);
    if (described.ok()) described = describe(kMemoryFileName, m.memory, request.checksums);
    if (described.ok()) described = describe(kDiskFileName, m.disk, request.checksums);
    if (described.ok()) {
        auto kernel_sum = sha256_file_hex(config.kernel_path);
        if (kernel_sum.ok()) m.kernel_sha256 = *kernel_sum;
        described = write_file(tmp + "/" + kManifestFileName, serialize_manifest(m), 0600);
    }
    if (!described.ok()) {
        cleanup_tmp();
        return std::move(described).error();
    }
    if (::rename(tmp.c_str(), request.dir.c_str()) != 0) {
        auto e = errno_error("rename " + tmp + " to " + request.dir);
        cleanup_tmp();
        return e;
    }
    t.total_ms = since_ms(start);
    if (timings) *timings = t;
    return m;
}

Result<std::unique_ptr<Vm>> restore_snapshot(const RestoreRequest& request, RestoreTimings* timings) {
    auto start = Clock::now();
    RestoreTimings t;

    // 1. Nothing starts unless the snapshot is whole and made for this host.
    auto manifest = TRY(load_and_verify(request.snapshot_dir, request.verify));
    TRY(check_compatible(manifest, TRY(this_host())));
    auto kernel = TRY(find_kernel());
    if (!manifest.kernel_release.empty() && !kernel.release.empty() && kernel.release != manifest.kernel_release)
        return make_error(ErrorCode::SnapshotIncompatible, "snapshot was taken with kernel " + manifest.kernel_release +
                                                       " but the cached kernel is " + kernel.release);
    if (manifest.nic != request.net.has_value())
        return make_error(ErrorCode::SnapshotIncompatible, manifest.nic ? "snapshot was taken with a NIC: restore it with one"
                                                                : "snapshot was taken without a NIC: restore it without one");
    t.verify_ms = since_ms(start);

    // 2-3. This VM's own disk (a reflink of the snapshot's), and QEMU with the snapshot's RAM mapped
    // copy-on-write, waiting for the device state: a spare started ahead, else started now.
    std::unique_ptr<Vm> vm;
    // A spare has its own id, named in its run dir and its QEMU's open paths (QEMU reopens the disk
    // by path when it activates it after the load), so it serves only restores that let Kiln pick the id.
    if (request.keep_spare && request.id.empty() && !request.net) {
        vm = SparePool::get().take(request.snapshot_dir, manifest);
        t.spare = vm != nullptr;
    }
    if (!vm) {
        std::string id = request.id.empty() ? TRY(random_hex(6)) : request.id;
        vm = TRY(launch_for_snapshot(request.snapshot_dir, manifest, kernel, id, request.net));
    }
    t.prepared_ms = t.launched_ms = since_ms(start);

    // 4. Device state only: the RAM is the mapped file.
    TRY(load_snapshot_state(*vm, request.timeout));
    t.loaded_ms = since_ms(start);

    // 5. Fresh entropy, clock and identity before anything else reaches the agent.
    GuestInfo guest{kernel.release, manifest.image_name, manifest.image_key, manifest.id,
                    request.hostname.empty() ? "kiln-" + vm->id() : request.hostname};
    vm->set_guest(guest);
    TRY(vm->renew_identity());
    t.ready_ms = since_ms(start);
    if (request.keep_spare && !request.net) SparePool::get().prepare(request.snapshot_dir);
    if (timings) *timings = t;
    return vm;
}

void prepare_spare(const std::string& snapshot_dir) { SparePool::get().prepare(snapshot_dir); }

void discard_spares(const std::string& snapshot_dir) { SparePool::get().discard(snapshot_dir); }

std::vector<pid_t> spare_pids() { return SparePool::get().pids(); }

Result<std::unique_ptr<Vm>> start_from_full_state(const VmConfig& shape, const std::string& stream,
                                                  const std::string& id, const GuestInfo& guest, Millis timeout) {
    std::string run_dir = TRY(run_dir_for(id));
    VmConfig config = child_config(shape, run_dir);
    config.name = "kiln-" + id;
    auto vm = TRY(Vm::launch(config, id));
    TRY(migrate_from_file(*vm, stream, /*ignore_shared=*/false, timeout));
    vm->set_guest(guest);
    TRY(vm->renew_identity());
    return vm;
}

// The spare of the snapshot whose memory file a restored parent maps, for its fork child: the same
// RAM backing, shape and device set (no NIC), only the migration stream differs. Null if there is
// none, if the parent was not restored from a snapshot or no longer matches it. With a spare,
// `snapshot_dir` is set: the caller starts the next spare for it once its child is ready.
std::unique_ptr<Vm> take_spare_for_child(const VmConfig& shape, const ForkRequest& request, std::string& snapshot_dir) {
    if (!request.use_spare || !request.id.empty() || request.net || shape.net) return nullptr;
    if (!shape.memory_file || shape.memory_file->share) return nullptr;
    // The spare's disk is a reflink of the snapshot's; the child's must become the parent's by a
    // reflink onto that same file. Where reflinks do not work, leave the spare to restores.
    std::string probe = shape.run_dir + "/.reflink-probe";
    bool reflinks = try_reflink(shape.rootfs_path, probe);
    ::unlink(probe.c_str());
    if (!reflinks) return nullptr;
    const std::string& memory = shape.memory_file->path;
    auto slash = memory.rfind('/');
    if (slash == std::string::npos || memory.substr(slash + 1) != kMemoryFileName) return nullptr;
    std::string dir = memory.substr(0, slash);
    auto manifest = load_and_verify(dir, VerifyLevel::Sizes);
    if (!manifest.ok() || manifest->vcpus != shape.vcpus || manifest->memory_mib != shape.memory_mib || manifest->nic)
        return nullptr;
    auto spare = SparePool::get().take(dir, *manifest);
    if (spare) snapshot_dir = dir;
    return spare;
}

Result<std::unique_ptr<Vm>> fork_vm(Vm& parent, const ForkRequest& request, ForkTimings* timings) {
    auto start = Clock::now();
    auto deadline = deadline_after(request.timeout);
    const VmConfig& shape = parent.config();
    if (shape.net.has_value() != request.net.has_value())
        return make_error(ErrorCode::InvalidArgument, shape.net ? "the parent has a NIC: its child needs one (ForkRequest::net)"
                                                        : "the parent has no NIC: its child cannot have one");
    // The child's QEMU: a spare started ahead for the parent's snapshot (it then has the spare's id
    // and run dir, and its disk becomes the parent's by the reclone after the stop), or one started now.
    // A spare taken is replaced once this fork is over, whether it succeeded or not.
    struct SpareRefill {
        std::string dir;
        ~SpareRefill() {
            if (!dir.empty()) SparePool::get().prepare(dir);
        }
    } refill;
    std::unique_ptr<Vm> launched = take_spare_for_child(shape, request, refill.dir);
    if (timings) timings->spare = launched != nullptr;
    std::string id, run_dir;
    if (launched) {
        id = launched->id();
        run_dir = launched->config().run_dir;
    } else {
        id = request.id.empty() ? TRY(random_hex(6)) : request.id;
        run_dir = TRY(new_run_dir(id));
    }
    RunPaths paths = RunPaths::in(run_dir);
    VmConfig config = child_config(shape, run_dir);
    config.name = "kiln-" + id;
    config.net = request.net;
    // A restored parent maps an immutable snapshot memory file copy-on-write: the child maps the
    // same file, so the stream's zero pages cost it reads of that shared page cache and no fresh
    // anonymous (transparent huge) pages; measured, ~20 MB less private memory per child. The
    // stream carries every page, so the file's content never decides the child's RAM, only what
    // it shares. A booted parent's own shared file keeps changing, and a deleted snapshot has no
    // file: those children get anonymous RAM.
    if (shape.memory_file && !shape.memory_file->share) {
        auto base = file_id(shape.memory_file->path);
        if (base && base->size == off_t(shape.memory_mib) << 20) config.memory_file = shape.memory_file;
    }

    // Without a spare the child's QEMU starts while the parent still runs (QEMU's start-up is ~40 ms
    // under TCG). It opens its disk at start: a reflink of the parent's taken now, cloned again onto
    // the same file once the parent has stopped, before the child has done any I/O (a spare's disk,
    // a reflink of the snapshot's, is recloned the same way). Where reflinks do not work the disk is
    // copied after the stop and the child starts then.
    Error launch_error = make_error(ErrorCode::ForkFailed, "the child was not started");
    std::thread launcher;
    auto start_child = [&] {
        launcher = std::thread([&] {
            auto r = Vm::launch(config, id);
            if (r.ok()) launched = std::move(*r);
            else launch_error = r.error();
        });
    };
    auto join_child = [&]() -> Result<std::unique_ptr<Vm>> {
        if (launcher.joinable()) launcher.join();
        if (!launched) return launch_error;
        return std::move(launched);
    };
    auto fail = [&](const std::string& what, const Error& e) -> Error {
        if (launcher.joinable()) launcher.join();
        launched.reset();  // destroys a launched child (and a spare's run dir)
        (void)remove_tree(run_dir);
        return make_error(e.code == ErrorCode::VmGone || e.code == ErrorCode::Timeout ? e.code : ErrorCode::ForkFailed, what + ": " + e.message);
    };
    bool early_start = launched || try_reflink(shape.rootfs_path, paths.disk);
    if (early_start && !launched) start_child();

    // The stream goes parent -> socket pair -> child: no file on disk, no copy in this process, and
    // the child loads while the parent still writes.
    auto stream = make_stream_channel();
    if (!stream.ok()) return fail("socket pair", stream.error());
    UniqueFd write_end = std::move(stream->write_end), read_end = std::move(stream->read_end);

    // The parent: sync and refuse work (freeze), stop, disk, start streaming (RAM included).
    if (auto st = prepare_migration(parent.qmp(), /*ignore_shared=*/false); !st.ok()) return fail("preparing the parent", st.error());
    if (auto st = parent.agent().freeze(); !st.ok()) return fail("agent freeze", st.error());
    auto paused_at = Clock::now();
    auto parent_stopped = parent.qmp().execute("stop");
    Status saving = parent_stopped.ok() ? ok_status() : Status(parent_stopped.error());
    if (saving.ok()) saving = early_start ? reclone_file(shape.rootfs_path, paths.disk) : Status(ok_status());
    if (saving.ok() && !early_start) {
        auto c = clone_file(shape.rootfs_path, paths.disk);
        if (c.ok()) start_child();
        else saving = c.error();
    }
    if (saving.ok()) saving = start_migration(parent.qmp(), write_end.get());
    write_end.reset();  // QEMU holds the only write end: the child sees EOF if the parent fails

    // The child: load from the socket as it fills.
    Result<std::unique_ptr<Vm>> child = make_error(ErrorCode::ForkFailed, "the child was not started");
    Status loading = saving;
    if (loading.ok()) {
        child = join_child();
        if (!child.ok()) loading = child.error();
        if (timings) timings->child_started_ms = since_ms(start);
    }
    if (loading.ok()) loading = set_capabilities((*child)->qmp(), /*ignore_shared=*/false);
    if (loading.ok()) loading = pass_fd((*child)->qmp(), read_end.get());
    if (loading.ok()) {
        auto r = (*child)->qmp().execute("migrate-incoming", json{{"uri", std::string("fd:") + kMigrateFdName}});
        if (!r.ok()) loading = r.error();
    }
    read_end.reset();  // the child QEMU holds the only read end: the parent fails if the child dies
    if (!loading.ok() && child.ok()) child = make_error(ErrorCode::ForkFailed, "discarded");  // closes its end
    bool streaming = saving.ok();
    if (streaming) saving = finish_migration(parent.qmp(), deadline);

    // The parent runs on whatever happened above. Its identity renewal (guest work: ~40 ms under
    // TCG) runs on a thread of its own, beside the child's load and renewal: two guests on two
    // cores, instead of the child waiting for the parent. The parent's agent refuses exec until
    // then, so nothing can reach it early; every path below joins the thread before returning.
    Status resumed = parent_stopped.ok() ? resume_source(parent.qmp()) : ok_status();
    if (timings) timings->parent_paused_ms = since_ms(paused_at);
    Status parent_renewed = resumed;
    std::thread parent_renewal;
    if (resumed.ok()) parent_renewal = std::thread([&] { parent_renewed = parent.renew_identity(); });
    struct Joiner {
        std::thread& t;
        void join() { if (t.joinable()) t.join(); }
        ~Joiner() { join(); }
    } parent_joiner{parent_renewal};
    auto fail_joined = [&](const std::string& what, const Error& e) {
        parent_joiner.join();
        return fail(what, e);
    };
    if (!streaming) return fail_joined("saving the parent", saving.error());
    if (!loading.ok()) return fail_joined("starting the child", loading.error());
    if (!saving.ok()) return fail_joined("saving the parent", saving.error());

    if (auto st = finish_incoming(**child, deadline); !st.ok()) return fail_joined("loading the child", st.error());
    if (timings) timings->child_loaded_ms = since_ms(start);
    GuestInfo guest = parent.guest();
    guest.snapshot_id.clear();
    guest.hostname = request.hostname.empty() ? "kiln-" + id : request.hostname;
    (*child)->set_guest(guest);
    if (auto st = (*child)->renew_identity(); !st.ok()) return fail_joined("child identity", st.error());
    if (timings) timings->child_ready_ms = since_ms(start);
    parent_joiner.join();
    if (!parent_renewed.ok()) return fail("resuming the parent", parent_renewed.error());
    return std::move(*child);
}

Status write_full_state(Vm& vm, const std::string& path, Millis timeout) {
    TRY(vm.agent().freeze());
    if (auto r = vm.qmp().execute("stop"); !r.ok()) return std::move(r).error();
    return migrate_to_file(vm.qmp(), path, /*ignore_shared=*/false, timeout);
}

}  // namespace kiln::vm
