// take_snapshot, and QEMU's plain full-state save and load (the benchmarks' baseline), through VmMigration.
#include "vm/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/errno_error.h"
#include "base/file_util.h"
#include "base/random.h"
#include "base/sha256.h"
#include "base/unique_fd.h"
#include "vm/clone_launch.h"
#include "vm/disk_clone.h"
#include "vm/guest_artifacts.h"
#include "vm/qemu_version.h"
#include "vm/vm_migration.h"

namespace kiln::vm {
namespace {

int64_t since_ms(Clock::time_point start) {
    return std::chrono::duration_cast<Millis>(Clock::now() - start).count();
}

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
    VmMigration migration(vm);

    // 1. The guest syncs its file systems and refuses new work until the next init.
    if (auto st = migration.prepare_outgoing(/*ignore_shared=*/true); !st.ok()) {
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
            (void)migration.resume();
            (void)vm.renew_identity();
        }
        return make_error(e.code == ErrorCode::VmGone ? ErrorCode::VmGone : ErrorCode::SnapshotFailed, "snapshot: " + e.message);
    };
    if (auto st = migration.stop(); !st.ok()) return fail(st.error());
    {
        std::string path = tmp + "/" + kStateFileName;
        UniqueFd state(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (!state) return fail(errno_error("create " + path));
        if (auto st = migration.start_outgoing(state.get()); !st.ok()) return fail(st.error());
        if (auto st = migration.finish_outgoing(deadline_after(Millis(60000))); !st.ok()) return fail(st.error());
    }
    t.state_ms = since_ms(paused_at);
    if (auto c = clone_file(config.memory_file->path, tmp + "/" + kMemoryFileName); !c.ok()) return fail(c.error());
    if (auto c = clone_file(config.rootfs_path, tmp + "/" + kDiskFileName); !c.ok()) return fail(c.error());
    t.clone_ms = since_ms(paused_at) - t.state_ms;

    // 6 (early). The VM runs on while the manifest's checksums are computed from the clones.
    if (request.resume) {
        if (auto st = migration.resume(); !st.ok()) return fail(st.error());
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

Status write_full_state(Vm& vm, const std::string& path, Millis timeout) {
    TRY(vm.agent().freeze());
    VmMigration migration(vm);
    TRY(migration.stop());
    return migration.write_to_file(path, /*ignore_shared=*/false, timeout);
}

Result<std::unique_ptr<Vm>> start_from_full_state(const VmConfig& shape, const std::string& stream,
                                                  const std::string& id, const GuestInfo& guest, Millis timeout) {
    std::string run_dir = TRY(run_dir_for(id));
    VmConfig config = clone_config(shape, run_dir);
    config.name = "kiln-" + id;
    auto vm = TRY(Vm::launch(config, id));
    TRY(VmMigration(*vm).load_from_file(stream, /*ignore_shared=*/false, timeout));
    vm->set_guest(guest);
    TRY(vm->renew_identity());
    return vm;
}

}  // namespace kiln::vm
