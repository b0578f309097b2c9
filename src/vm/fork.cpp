// fork_vm: a running VM copied into a new QEMU through one socket pair (see snapshot.h, docs/snapshots.md#fork).
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "base/errno_error.h"
#include "base/file_util.h"
#include "base/random.h"
#include "base/unique_fd.h"
#include "vm/clone_launch.h"
#include "vm/disk_clone.h"
#include "vm/snapshot.h"
#include "vm/spare_pool.h"
#include "vm/vm_migration.h"

namespace kiln::vm {
namespace {

int64_t since_ms(Clock::time_point start) {
    return std::chrono::duration_cast<Millis>(Clock::now() - start).count();
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

// One fork. run() calls the phases in the order they happen:
//   check_devices               the child has a NIC exactly when the parent has one
//   choose_child_qemu           a spare of the parent's snapshot, else an id and a run dir
//   start_child_early           the child's disk reflinked and its QEMU started while the parent runs
//   open_stream                 the socket pair the stream goes through
//   prepare_parent_stream       the parent's migration unthrottled, capabilities set
//   freeze_parent               the parent's agent syncs the guest and refuses work
//   stop_parent_and_stream      live: the stream started while the parent runs; otherwise vCPUs
//                               stopped, the child's disk copied, then the stream started
//   start_child_load            the child's QEMU joined and loading from the socket
//   finish_parent_stream        the parent's whole state written; live: QEMU stopped the parent
//                               for the last pass, and the child's disk is made the parent's now
//   resume_parent               cont; its identity renewed on a thread beside the child's load
//   finish_child                the child loaded and its identity renewed; the parent's renewal joined
// Threads: the calling thread runs the phases. m_launcher starts the child's QEMU (while the parent
// still runs, or after a late disk copy) and owns m_launched and m_launch_error until
// join_launcher(). m_parent_renewal renews the parent's identity and owns m_parent_renewed until
// join_parent_renewal(). fail() and the destructor join both.
class VmFork {
public:
    VmFork(Vm& parent, const ForkRequest& request, ForkTimings* timings)
        : m_parent(parent), m_shape(parent.config()), m_request(request), m_timings(timings), m_start(Clock::now()),
          m_deadline(deadline_after(request.timeout)), m_parent_migration(parent) {}
    // Joins both threads, destroys a child not handed out, and starts the next spare of a snapshot
    // whose spare was taken, whether the fork succeeded or not.
    ~VmFork();
    VmFork(const VmFork&) = delete;
    VmFork& operator=(const VmFork&) = delete;

    Result<std::unique_ptr<Vm>> run();

private:
    Status check_devices() const;
    Status choose_child_qemu();
    std::unique_ptr<Vm> take_spare();
    void start_child_early();
    Status open_stream();
    Status prepare_parent_stream();
    Status freeze_parent() { return m_parent.agent().freeze(); }
    Status stop_parent_and_stream();
    Status start_child_load();
    Status finish_parent_stream();
    void resume_parent();
    Result<std::unique_ptr<Vm>> finish_child();

    void start_launcher();
    void join_launcher();
    void join_parent_renewal();
    // Joins both threads, destroys the child's QEMU (a spare's too) and its run dir, and says what failed.
    Error fail(const std::string& what, const Error& e);

    Vm& m_parent;
    const VmConfig& m_shape;  // the parent's
    const ForkRequest& m_request;
    ForkTimings* const m_timings;
    const Clock::time_point m_start;
    const Clock::time_point m_deadline;
    VmMigration m_parent_migration;

    // The child, as choose_child_qemu set it up.
    std::string m_id;
    std::string m_run_dir;
    RunPaths m_paths;
    VmConfig m_config;
    std::string m_spare_dir;  // the snapshot whose (cold) spare the child is or could have been: its next starts at the end
    bool m_early_start = false;  // the child's QEMU starts before the parent stops, on a reflinked disk
    // The parent runs while its RAM is copied (needs m_early_start: the disk is recloned in the
    // stop QEMU makes at the end, and a copied disk would make that stop as long as the copy).
    bool m_live = false;

    // The child's QEMU: a spare, or the one m_launcher starts (m_launcher's until joined).
    std::thread m_launcher;
    std::unique_ptr<Vm> m_launched;
    Error m_launch_error = make_error(ErrorCode::ForkFailed, "the child was not started");
    std::unique_ptr<Vm> m_child;  // m_launched once joined and loading

    UniqueFd m_write_end, m_read_end;  // the stream: parent -> child

    bool m_parent_stopped = false;  // by us, or (live) possibly by QEMU: resume_parent conts it
    Clock::time_point m_paused_at;  // when we stopped it (or the stream ended, live): a fallback for QEMU's events
    std::thread m_parent_renewal;
    Status m_parent_renewed = ok_status();  // m_parent_renewal's until joined
};

Result<std::unique_ptr<Vm>> VmFork::run() {
    TRY(check_devices());
    TRY(choose_child_qemu());
    start_child_early();
    if (auto st = open_stream(); !st.ok()) return fail("socket pair", st.error());
    if (auto st = prepare_parent_stream(); !st.ok()) return fail("preparing the parent", st.error());
    if (auto st = freeze_parent(); !st.ok()) return fail("agent freeze", st.error());
    Status saving = stop_parent_and_stream();
    Status loading = saving.ok() ? start_child_load() : saving;
    m_read_end.reset();  // the child's QEMU holds the only read end: the parent fails if the child dies
    if (!loading.ok()) m_child.reset();  // closes its end
    bool streaming = saving.ok();
    if (streaming) saving = finish_parent_stream();
    // The parent runs on whatever happened above.
    resume_parent();
    if (!streaming) return fail("saving the parent", saving.error());
    if (!loading.ok()) return fail("starting the child", loading.error());
    if (!saving.ok()) return fail("saving the parent", saving.error());
    return finish_child();
}

Status VmFork::check_devices() const {
    if (m_shape.net.has_value() != m_request.net.has_value())
        return make_error(ErrorCode::InvalidArgument, m_shape.net ? "the parent has a NIC: its child needs one (ForkRequest::net)"
                                                                  : "the parent has no NIC: its child cannot have one");
    return ok_status();
}

// The child's QEMU: a spare started ahead for the parent's snapshot (the child then has the spare's
// id and run dir, and its disk becomes the parent's by the reclone after the stop), or one started
// now under a new id.
Status VmFork::choose_child_qemu() {
    m_launched = take_spare();
    if (m_timings) m_timings->spare = m_launched != nullptr;
    if (m_launched) {
        m_id = m_launched->id();
        m_run_dir = m_launched->config().run_dir;
    } else {
        m_id = m_request.id.empty() ? TRY(random_hex(6)) : m_request.id;
        m_run_dir = TRY(new_run_dir(m_id));
    }
    m_paths = RunPaths::in(m_run_dir);
    m_config = clone_config(m_shape, m_run_dir);
    m_config.name = "kiln-" + m_id;
    m_config.net = m_request.net;
    // A restored parent maps an immutable snapshot memory file copy-on-write: the child maps the
    // same file, so the stream's zero pages cost it reads of that shared page cache and no fresh
    // anonymous (transparent huge) pages; measured, ~20 MB less private memory per child. The
    // stream carries every page, so the file's content never decides the child's RAM, only what
    // it shares. A booted parent's own shared file keeps changing, and a deleted snapshot has no
    // file: those children get anonymous RAM.
    if (m_shape.memory_file && !m_shape.memory_file->share) {
        struct stat st {};
        if (::stat(m_shape.memory_file->path.c_str(), &st) == 0 && st.st_size == off_t(m_shape.memory_mib) << 20)
            m_config.memory_file = m_shape.memory_file;
    }
    return ok_status();
}

// The spare of the snapshot whose memory file a restored parent maps: the same RAM backing, shape
// and device set (no NIC), only the migration stream differs. Null without a pool, with a requested
// id or a NIC, if the parent was not restored from a snapshot or no longer matches it, or if there
// is none. m_spare_dir is set when a spare was taken, or when the pool keeps spares for that
// snapshot (a template's) but had no cold one (a pool of warm spares has none until its first fork):
// the snapshot's next cold spare starts once this fork is over. User snapshots get none.
std::unique_ptr<Vm> VmFork::take_spare() {
    if (!m_request.spares || !m_request.id.empty() || m_request.net || m_shape.net) return nullptr;
    if (!m_shape.memory_file || m_shape.memory_file->share) return nullptr;
    // The spare's disk is a reflink of the snapshot's; the child's must become the parent's by a
    // reflink onto that same file. Where reflinks do not work, leave the spare to restores.
    std::string probe = m_shape.run_dir + "/.reflink-probe";
    bool reflinks = try_reflink(m_shape.rootfs_path, probe);
    ::unlink(probe.c_str());
    if (!reflinks) return nullptr;
    const std::string& memory = m_shape.memory_file->path;
    auto slash = memory.rfind('/');
    if (slash == std::string::npos || memory.substr(slash + 1) != kMemoryFileName) return nullptr;
    std::string dir = memory.substr(0, slash);
    auto manifest = load_and_verify(dir, VerifyLevel::Sizes);
    if (!manifest.ok() || manifest->vcpus != m_shape.vcpus || manifest->memory_mib != m_shape.memory_mib || manifest->nic)
        return nullptr;
    bool kept = m_request.spares->keeps_spares_for(dir);
    auto spare = m_request.spares->take_cold(dir, *manifest);
    if (spare || kept) m_spare_dir = dir;
    return spare;
}

// Without a spare the child's QEMU starts while the parent still runs (QEMU's start-up is ~40 ms
// under TCG). It opens its disk at start: a reflink of the parent's taken now, cloned again onto
// the same file once the parent has stopped, before the child has done any I/O (a spare's disk,
// a reflink of the snapshot's, is recloned the same way). Where reflinks do not work the disk is
// copied after the stop and the child starts then.
void VmFork::start_child_early() {
    m_early_start = m_launched || try_reflink(m_shape.rootfs_path, m_paths.disk);
    m_live = m_early_start && m_request.live;
    if (m_early_start && !m_launched) start_launcher();
}

// Live, the parent's pause is QEMU's last pass (pages dirtied during the copy, device state) plus
// the disk reclone and cont: measured under TCG, ~40 ms of RAM copying moves out of the pause.
Status VmFork::prepare_parent_stream() {
    return m_live ? m_parent_migration.prepare_live_outgoing() : m_parent_migration.prepare_outgoing(/*ignore_shared=*/false);
}

// The stream goes parent -> socket pair -> child: no file on disk, no copy in this process, and
// the child loads while the parent still writes.
Status VmFork::open_stream() {
    auto stream = TRY(make_stream_channel());
    m_write_end = std::move(stream.write_end);
    m_read_end = std::move(stream.read_end);
    return ok_status();
}

// Live, the stream starts while the parent runs. Otherwise the parent's pause starts here: stop,
// disk, start streaming (RAM included).
Status VmFork::stop_parent_and_stream() {
    if (m_live) {
        // Stopped while QEMU sets the migration up (see vm_migration.cpp, kLive), then running
        // until QEMU stops it for the last pass.
        m_parent_stopped = true;
        Status saving = m_parent_migration.stop();
        if (saving.ok()) saving = m_parent_migration.start_outgoing(m_write_end.get());
        m_write_end.reset();
        if (saving.ok()) saving = m_parent_migration.wait_until_active(m_deadline);
        if (saving.ok()) saving = m_parent_migration.resume();
        return saving;
    }
    m_paused_at = Clock::now();
    Status saving = m_parent_migration.stop();
    m_parent_stopped = saving.ok();
    if (saving.ok() && m_early_start) saving = reclone_file(m_shape.rootfs_path, m_paths.disk);
    if (saving.ok() && !m_early_start) {
        auto c = clone_file(m_shape.rootfs_path, m_paths.disk);
        if (c.ok()) start_launcher();
        else saving = c.error();
    }
    if (saving.ok()) saving = m_parent_migration.start_outgoing(m_write_end.get());
    m_write_end.reset();  // QEMU holds the only write end: the child sees EOF if the parent fails
    return saving;
}

// The child: load from the socket as it fills.
Status VmFork::start_child_load() {
    join_launcher();
    if (m_timings) m_timings->child_started_ms = since_ms(m_start);
    if (!m_launched) return m_launch_error;
    m_child = std::move(m_launched);
    VmMigration child_migration(*m_child);
    TRY(child_migration.prepare_incoming(m_read_end.get(), /*ignore_shared=*/false));
    return child_migration.start_incoming();
}

// Live, QEMU stops the parent for its last pass and leaves it stopped: the child's disk, a reflink
// taken while the parent ran, becomes the parent's at that same instant, before either runs again.
// The child's QEMU runs with -S, so it waits for finish_child's cont whatever the parent's run state.
Status VmFork::finish_parent_stream() {
    TRY(m_parent_migration.finish_outgoing(m_deadline));
    if (!m_live) return ok_status();
    m_paused_at = Clock::now();
    return reclone_file(m_shape.rootfs_path, m_paths.disk);
}

// Its identity renewal (guest work: ~40 ms under TCG) runs on a thread of its own, beside the
// child's load and renewal: two guests on two cores, instead of the child waiting for the parent.
// The parent's agent refuses exec until then, so nothing can reach it early.
void VmFork::resume_parent() {
    Status resumed = m_parent_stopped ? m_parent_migration.resume() : ok_status();
    if (m_timings && m_parent_stopped) {
        auto paused = m_parent_migration.paused_ms();
        m_timings->parent_paused_ms = paused ? *paused : double(since_ms(m_paused_at));
    }
    m_parent_renewed = resumed;
    if (resumed.ok()) m_parent_renewal = std::thread([this] { m_parent_renewed = m_parent.renew_identity(); });
}

Result<std::unique_ptr<Vm>> VmFork::finish_child() {
    if (auto st = VmMigration(*m_child).finish_incoming(m_deadline); !st.ok()) return fail("loading the child", st.error());
    if (m_timings) m_timings->child_loaded_ms = since_ms(m_start);
    GuestInfo guest = m_parent.guest();
    guest.snapshot_id.clear();
    guest.hostname = m_request.hostname.empty() ? "kiln-" + m_id : m_request.hostname;
    m_child->set_guest(guest);
    if (auto st = m_child->renew_identity(); !st.ok()) return fail("child identity", st.error());
    if (m_timings) m_timings->child_ready_ms = since_ms(m_start);
    join_parent_renewal();
    if (!m_parent_renewed.ok()) return fail("resuming the parent", m_parent_renewed.error());
    return std::move(m_child);
}

void VmFork::start_launcher() {
    m_launcher = std::thread([this] {
        auto r = Vm::launch(m_config, m_id);
        if (r.ok()) m_launched = std::move(*r);
        else m_launch_error = r.error();
    });
}

void VmFork::join_launcher() {
    if (m_launcher.joinable()) m_launcher.join();
}

void VmFork::join_parent_renewal() {
    if (m_parent_renewal.joinable()) m_parent_renewal.join();
}

Error VmFork::fail(const std::string& what, const Error& e) {
    join_parent_renewal();
    join_launcher();
    m_launched.reset();  // destroys a launched child (and a spare's run dir)
    m_child.reset();
    (void)remove_tree(m_run_dir);
    return make_error(e.code == ErrorCode::VmGone || e.code == ErrorCode::Timeout ? e.code : ErrorCode::ForkFailed,
                      what + ": " + e.message);
}

VmFork::~VmFork() {
    join_parent_renewal();
    join_launcher();
    m_launched.reset();
    m_child.reset();
    if (!m_spare_dir.empty()) m_request.spares->prepare_cold(m_spare_dir);
}

}  // namespace

Result<std::unique_ptr<Vm>> fork_vm(Vm& parent, const ForkRequest& request, ForkTimings* timings) {
    VmFork fork(parent, request, timings);
    return fork.run();
}

}  // namespace kiln::vm
