// Snapshot, restore and fork, driven through QMP migration to and from files passed as fds.
#include "vm/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "base/errno_error.h"
#include "base/file_util.h"
#include "base/random.h"
#include "base/sha256.h"
#include "vm/guest_artifacts.h"
#include "vm/qemu_version.h"

namespace kiln::vm {
namespace {

constexpr const char* kMigrateFdName = "kiln-migrate";

int64_t since_ms(Clock::time_point start) {
    return std::chrono::duration_cast<Millis>(Clock::now() - start).count();
}

Status set_ignore_shared(QmpClient& qmp, bool on) {
    json caps = json::array({json{{"capability", "x-ignore-shared"}, {"state", on}}});
    auto r = qmp.execute("migrate-set-capabilities", json{{"capabilities", caps}});
    if (!r.ok()) return std::move(r).error();
    return ok_status();
}

Status pass_fd(QmpClient& qmp, int fd) {
    auto r = qmp.execute_with_fd("getfd", json{{"fdname", kMigrateFdName}}, fd);
    if (!r.ok()) return std::move(r).error();
    return ok_status();
}

// Writes the VM's migration stream into `path`; with x-ignore-shared, shared RAM is left out.
Status migrate_to_file(QmpClient& qmp, const std::string& path, bool ignore_shared, Millis timeout) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) return errno_error("create " + path);
    TRY(set_ignore_shared(qmp, ignore_shared));
    TRY(pass_fd(qmp, fd.get()));
    fd.reset();  // QEMU holds its own copy now
    auto started = qmp.execute("migrate", json{{"uri", std::string("fd:") + kMigrateFdName}});
    if (!started.ok()) return std::move(started).error();
    auto deadline = deadline_after(timeout);
    for (;;) {
        auto info = qmp.execute("query-migrate");
        if (!info.ok()) return std::move(info).error();
        std::string status = info->value("status", "");
        if (status == "completed") return ok_status();
        if (status == "failed" || status == "cancelled")
            return make_error("snapshot_failed", "QEMU migration " + status + ": " + info->value("error-desc", "no reason given"));
        if (remaining_ms(deadline) == 0) {
            (void)qmp.execute("migrate_cancel");
            return make_error("timeout", "writing the device state took longer than " + std::to_string(timeout.count()) + " ms");
        }
        std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
}

// Loads a migration stream from `path` into a QEMU started with -incoming defer, and waits until
// the vCPUs run. A stream QEMU rejects makes QEMU exit: the error then quotes qemu.log.
Status migrate_from_file(Vm& vm, const std::string& path, bool ignore_shared, Millis timeout) {
    QmpClient& qmp = vm.qmp();
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno_error("open " + path);
    TRY(set_ignore_shared(qmp, ignore_shared));
    TRY(pass_fd(qmp, fd.get()));
    fd.reset();
    auto started = qmp.execute("migrate-incoming", json{{"uri", std::string("fd:") + kMigrateFdName}});
    if (!started.ok()) return make_error("restore_failed", "migrate-incoming: " + started.error().message);
    auto deadline = deadline_after(timeout);
    for (;;) {
        auto st = qmp.execute("query-status");
        if (!st.ok()) return make_error("restore_failed", "loading the device state failed: " + vm.gone_error().message);
        std::string status = st->value("status", "");
        if (status == "running") return ok_status();
        if (status == "paused") {
            // The source was stopped when its state was written, and QEMU carries that run state
            // over: the loaded VM waits for a cont.
            auto mig = qmp.execute("query-migrate");
            if (mig.ok() && mig->value("status", "") == "completed") {
                auto cont = qmp.execute("cont");
                if (!cont.ok()) return make_error("restore_failed", "cont after loading: " + cont.error().message);
                return ok_status();
            }
        }
        if (status != "inmigrate" && status != "prelaunch" && status != "paused")
            return make_error("restore_failed", "the VM is in state '" + status + "' after loading its device state");
        if (remaining_ms(deadline) == 0) {
            auto mig = qmp.execute("query-migrate");
            return make_error("timeout", "loading the device state timed out (VM state '" + status + "', migration " +
                                             (mig.ok() ? mig->dump() : mig.error().message) + ")");
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
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
    return config;
}

Result<std::string> new_run_dir(const std::string& id) {
    auto dir = TRY(run_dir_for(id));
    TRY(make_dirs(vms_dir(), 0700));
    if (::mkdir(dir.c_str(), 0700) != 0) return errno_error("create run dir " + dir);
    return dir;
}

}  // namespace

Result<SnapshotManifest> take_snapshot(Vm& vm, const SnapshotRequest& request, SnapshotTimings* timings) {
    auto start = Clock::now();
    SnapshotTimings t;
    const VmConfig& config = vm.config();
    if (!config.memory_file || !config.memory_file->share)
        return make_error("not_snapshottable",
                          "this VM's RAM is not a shared memory file; boot it with snapshottable memory to snapshot it");
    if (path_exists(request.dir)) return make_error("conflict", "snapshot directory " + request.dir + " already exists");
    std::string tmp = request.dir + ".partial";
    (void)remove_tree(tmp);
    TRY(make_dirs(tmp, 0700));
    auto cleanup_tmp = [&] { (void)remove_tree(tmp); };

    // 1. The guest syncs its file systems and refuses new work until the next init.
    if (auto st = vm.agent().freeze(); !st.ok()) {
        cleanup_tmp();
        return make_error("snapshot_failed", "agent freeze: " + st.error().message);
    }
    t.freeze_ms = since_ms(start);

    // 2-4. Everything that must see one consistent instant happens while the vCPUs are stopped.
    auto paused_at = Clock::now();
    auto fail = [&](const Error& e) -> Error {
        cleanup_tmp();
        if (request.resume) {
            (void)vm.qmp().execute("cont");
            (void)vm.renew_identity();
        }
        return make_error(e.code == "vm_gone" ? "vm_gone" : "snapshot_failed", "snapshot: " + e.message);
    };
    if (auto r = vm.qmp().execute("stop"); !r.ok()) return fail(r.error());
    if (auto st = migrate_to_file(vm.qmp(), tmp + "/" + kStateFileName, /*ignore_shared=*/true, Millis(60000)); !st.ok())
        return fail(st.error());
    t.state_ms = since_ms(paused_at);
    if (auto c = clone_file(config.memory_file->path, tmp + "/" + kMemoryFileName); !c.ok()) return fail(c.error());
    if (auto c = clone_file(config.rootfs_path, tmp + "/" + kDiskFileName); !c.ok()) return fail(c.error());
    t.clone_ms = since_ms(paused_at) - t.state_ms;

    // 6 (early). The VM runs on while the manifest's checksums are computed from the clones.
    if (request.resume) {
        if (auto r = vm.qmp().execute("cont"); !r.ok()) return fail(r.error());
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
        return make_error("snapshot_incompatible", "snapshot was taken with kernel " + manifest.kernel_release +
                                                       " but the cached kernel is " + kernel.release);
    t.verify_ms = since_ms(start);

    // 2. This VM's own disk: a reflink of the snapshot's.
    std::string id = request.id.empty() ? TRY(random_hex(6)) : request.id;
    std::string run_dir = TRY(new_run_dir(id));
    RunPaths paths = RunPaths::in(run_dir);
    if (auto c = clone_file(request.snapshot_dir + "/" + kDiskFileName, paths.disk); !c.ok()) {
        (void)remove_tree(run_dir);
        return std::move(c).error();
    }
    t.prepared_ms = since_ms(start);

    // 3. QEMU maps the snapshot's RAM copy-on-write and waits for the device state.
    auto qemu = qemu_info();
    if (!qemu.ok()) {
        (void)remove_tree(run_dir);
        return std::move(qemu).error();
    }
    VmConfig config;
    config.qemu_binary = qemu->binary;
    config.sandbox = qemu->sandbox;
    config.name = "kiln-" + id;
    config.kernel_path = kernel.path;
    config.vcpus = manifest.vcpus;
    config.memory_mib = manifest.memory_mib;
    config.accel = manifest.accel == "kvm" ? Accel::Kvm : Accel::Tcg;
    config.disk_cache = DiskCache::Unsafe;
    if (auto khz = host_tsc_khz(); khz.ok()) config.tsc_khz = *khz;
    config = child_config(config, run_dir);
    config.memory_file = MemoryFile{request.snapshot_dir + "/" + kMemoryFileName, /*share=*/false};
    auto vm = TRY(Vm::launch(config, id));
    t.launched_ms = since_ms(start);

    // 4. Device state only: the RAM is the mapped file.
    TRY(migrate_from_file(*vm, request.snapshot_dir + "/" + kStateFileName, /*ignore_shared=*/true, request.timeout));
    t.loaded_ms = since_ms(start);

    // 5. Fresh entropy, clock and identity before anything else reaches the agent.
    GuestInfo guest{kernel.release, manifest.image_name, manifest.image_key, manifest.id,
                    request.hostname.empty() ? "kiln-" + id : request.hostname};
    vm->set_guest(guest);
    TRY(vm->renew_identity());
    t.ready_ms = since_ms(start);
    if (timings) *timings = t;
    return vm;
}

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

Result<std::unique_ptr<Vm>> fork_vm(Vm& parent, const ForkRequest& request, ForkTimings* timings) {
    auto start = Clock::now();
    std::string id = request.id.empty() ? TRY(random_hex(6)) : request.id;
    std::string run_dir = TRY(new_run_dir(id));
    RunPaths paths = RunPaths::in(run_dir);
    std::string stream = run_dir + "/fork-state";
    auto cleanup = [&] { (void)remove_tree(run_dir); };

    // The parent: sync, stop, write device state and RAM, clone the disk, run on.
    if (auto st = parent.agent().freeze(); !st.ok()) {
        cleanup();
        return make_error("fork_failed", "agent freeze: " + st.error().message);
    }
    auto paused_at = Clock::now();
    Status saved = ok_status();
    if (auto r = parent.qmp().execute("stop"); !r.ok()) saved = std::move(r).error();
    if (saved.ok()) saved = migrate_to_file(parent.qmp(), stream, /*ignore_shared=*/false, request.timeout);
    if (saved.ok()) {
        auto c = clone_file(parent.config().rootfs_path, paths.disk);
        if (!c.ok()) saved = std::move(c).error();
    }
    Status resumed = ok_status();
    if (auto r = parent.qmp().execute("cont"); !r.ok()) resumed = std::move(r).error();
    if (timings) timings->parent_paused_ms = since_ms(paused_at);
    if (resumed.ok()) resumed = parent.renew_identity();
    if (!saved.ok()) {
        cleanup();
        return make_error("fork_failed", "saving the parent: " + saved.error().message);
    }
    if (!resumed.ok()) {
        cleanup();
        return make_error("fork_failed", "resuming the parent: " + resumed.error().message);
    }

    // The child: the parent's shape, anonymous RAM filled from the stream.
    GuestInfo guest = parent.guest();
    guest.snapshot_id.clear();
    guest.hostname = request.hostname.empty() ? "kiln-" + id : request.hostname;
    auto child = start_from_full_state(parent.config(), stream, id, guest, request.timeout);
    (void)::unlink(stream.c_str());  // the child's RAM holds it now (or the child failed)
    if (!child.ok()) {
        cleanup();
        return std::move(child).error();
    }
    if (timings) timings->child_ready_ms = since_ms(start);
    return child;
}

Status write_full_state(Vm& vm, const std::string& path, Millis timeout) {
    TRY(vm.agent().freeze());
    if (auto r = vm.qmp().execute("stop"); !r.ok()) return std::move(r).error();
    return migrate_to_file(vm.qmp(), path, /*ignore_shared=*/false, timeout);
}

}  // namespace kiln::vm
