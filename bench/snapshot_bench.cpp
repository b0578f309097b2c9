// Snapshot benchmark: restore to exec-ready and fork, beside same-run baselines (cold boot of the
// same guest, QEMU's plain restore that loads all RAM), taken interleaved round by round with the
// restores they are compared with, and ratios; then the PSS of 20 idle clones of a 512 MiB guest
// against 20 cold-booted guests. Run by `make bench`.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/random.h"
#include "bench_util.h"
#include "bench_vm.h"
#include "stats.h"
#include "vm/clone_launch.h"
#include "vm/guest_artifacts.h"
#include "vm/snapshot.h"
#include "vm/spare_pool.h"

using namespace kiln;
using namespace kiln::bench;
using namespace kiln::vm;

namespace {


std::string make_snapshot(const std::string& root, uint32_t memory_mib) {
    BootOptions options;
    options.snapshottable = true;
    options.memory_mib = memory_mib;
    auto vm = must(Vm::boot(options), "boot template");
    std::string dir = root + "/snap-" + must(random_hex(4), "id");
    SnapshotRequest req;
    req.dir = dir;
    req.resume = false;
    must(take_snapshot(*vm, req), "take snapshot");
    return dir;
}

}  // namespace

int main() {
    const int restores = env_int("KILN_BENCH_RESTORES", 50);
    const int forks = env_int("KILN_BENCH_FORKS", 20);
    const int boots = env_int("KILN_BENCH_BOOTS", 10);
    const int clones = env_int("KILN_BENCH_CLONES", 20);
    std::string root = vms_dir() + "/../bench-snapshots";
    must(Result<Ok>(make_dirs(root)), "mkdir");
    std::string accel = accel_name(must(choose_accel(AccelMode::Auto), "accel").accel);

    std::printf("# kiln snapshot_bench: 256 MiB guest, 1 vCPU, image tiny, accel=%s\n", accel.c_str());
    std::string snap = make_snapshot(root, 256);
    SparePool spares;  // the spare QEMUs, as kilnd keeps one per built-in template

    // Our restore (MAP_PRIVATE memory file, device state only, identity renewed = exec-ready), with
    // a QEMU started per restore and with a spare QEMU started ahead (from the pool), and the two
    // baselines, interleaved round by round: the host is shared, and a baseline measured minutes
    // apart from what it is compared with measures the neighbours' load as much as Kiln.
    struct RestoreRun {
        std::vector<double> ready, launched, loaded, first_exec, second_exec;
        int spares_used = 0;
    };
    RestoreRun cold, warm;
    auto restore_once = [&](bool with_spare, bool record, RestoreRun& run) {
        RestoreRequest req;
        req.snapshot_dir = snap;
        if (with_spare) req.spares = &spares;
        RestoreTimings t;
        auto start = Clock::now();
        auto vm = must(restore_snapshot(req, &t), "restore");
        double ready = ms_since(start);
        auto exec_start = Clock::now();
        exec_true(*vm);
        double first = ms_since(exec_start);
        exec_start = Clock::now();
        exec_true(*vm);
        double second = ms_since(exec_start);
        if (!record) return;
        run.ready.push_back(ready);
        run.launched.push_back(static_cast<double>(t.launched_ms));
        run.loaded.push_back(static_cast<double>(t.loaded_ms));
        run.first_exec.push_back(first);
        run.second_exec.push_back(second);
        run.spares_used += t.spare;
    };
    // The next spare starts in the background after a restore with the pool: let it finish before
    // the next figure is taken, so that its start-up is not counted against whatever runs beside it.
    auto wait_for_spare = [&] {
        auto deadline = Clock::now() + std::chrono::seconds(10);
        while (spares.pids().empty() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    };

    // Baseline: QEMU's plain restore, the whole RAM from a migration stream.
    std::string full_stream = root + "/full-" + must(random_hex(4), "id");
    VmConfig shape;
    GuestInfo guest;
    {
        RestoreRequest req;
        req.snapshot_dir = snap;
        auto vm = must(restore_snapshot(req), "restore for the full stream");
        shape = vm->config();
        guest = vm->guest();
        must(Result<Ok>(write_full_state(*vm, full_stream)), "write full state");
    }
    auto full_once = [&]() {
        std::string id = must(random_hex(6), "id");
        std::string run_dir = must(new_run_dir(id), "run dir");
        auto start = Clock::now();
        must(clone_file(snap + "/" + kDiskFileName, RunPaths::in(run_dir).disk), "clone disk");
        auto vm = must(start_from_full_state(shape, full_stream, id, guest), "full restore");
        return ms_since(start);
    };

    std::vector<double> full_ms, boot_ms, plain_boot_ms;
    // The plain QEMU cold boot of the same guest: the kernel's defaults, without Kiln's TCG savings.
    auto plain_boot = [&] {
        BootOptions options;
        options.tcg_boot_savings = false;
        auto start = Clock::now();
        auto vm = must(Vm::boot(options), "plain cold boot");
        plain_boot_ms.push_back(ms_since(start));
    };
    const int rounds = restores + 2;  // the first two warm the page cache (and make the first spare)
    const int full_runs = restores / 2;
    for (int i = 0; i < rounds; ++i) {
        const bool record = i >= 2;
        restore_once(false, record, cold);
        restore_once(true, record, warm);
        wait_for_spare();
        if (i < full_runs + 2) {
            double ms = full_once();
            if (record) full_ms.push_back(ms);
        }
        // Cold boots of the same guest, spread over the rounds.
        if (record && static_cast<int>(boot_ms.size()) < boots && (i - 2) % std::max(1, restores / std::max(1, boots)) == 0) {
            auto start = Clock::now();
            auto vm = must(Vm::boot(BootOptions{}), "cold boot");
            boot_ms.push_back(ms_since(start));
            vm.reset();
            plain_boot();
        }
    }
    while (static_cast<int>(boot_ms.size()) < boots) {
        auto start = Clock::now();
        auto vm = must(Vm::boot(BootOptions{}), "cold boot");
        boot_ms.push_back(ms_since(start));
        vm.reset();
        plain_boot();
    }
    spares.discard(snap);
    ::unlink(full_stream.c_str());
    std::vector<double>& restore_ms = cold.ready;

    // Fork of a running (restored) VM, in turns: a child QEMU started per fork, the snapshot's spare
    // (ForkRequest::spares, as kilnd does with keep_spare), and the spare with the parent stopped for
    // the whole copy (live = false, the path before live forks); waiting for the next spare before
    // each fork.
    struct ForkRun {
        std::vector<double> ready, paused, started, loaded;
        int spares_used = 0;
    };
    ForkRun plain_fork, spare_fork, stopped_fork;
    {
        RestoreRequest req;
        req.snapshot_dir = snap;
        auto parent = must(restore_snapshot(req), "restore parent");
        spares.prepare(snap);
        for (int i = 0; i < 3 * forks; ++i) {
            bool use_spare = i % 3 != 0, stopped = i % 3 == 2;
            wait_for_spare();  // also before a fork without: the spare's start-up must not run beside it
            ForkRequest fork_request;
            if (use_spare) fork_request.spares = &spares;
            fork_request.live = !stopped;
            ForkTimings t;
            auto child = must(fork_vm(*parent, fork_request, &t), "fork");
            ForkRun& run = stopped ? stopped_fork : use_spare ? spare_fork : plain_fork;
            run.ready.push_back(static_cast<double>(t.child_ready_ms));
            run.paused.push_back(static_cast<double>(t.parent_paused_ms));
            run.started.push_back(static_cast<double>(t.child_started_ms));
            run.loaded.push_back(static_cast<double>(t.child_loaded_ms));
            run.spares_used += t.spare;
        }
        spares.discard(snap);
    }

    auto restore = bench::summarize(restore_ms);
    auto full = bench::summarize(full_ms);
    auto boot = bench::summarize(boot_ms);
    auto spare_restore = bench::summarize(warm.ready);
    bench::print_row("restore to exec-ready, QEMU started per restore", restore, "ms", accel);
    bench::print_row("  of which QEMU up, sockets connected", bench::summarize(cold.launched), "ms", accel);
    bench::print_row("  of which device state loaded", bench::summarize(cold.loaded), "ms", accel);
    bench::print_row("  first exec `true` after restore", bench::summarize(cold.first_exec), "ms", accel);
    bench::print_row("  second exec `true` after restore", bench::summarize(cold.second_exec), "ms", accel);
    bench::print_row("restore to exec-ready, spare QEMU", spare_restore, "ms", accel, "target <= 60 ms p50");
    std::printf("  (spare used in %d of %zu restores)\n", warm.spares_used, warm.ready.size());
    bench::print_row("  of which spare taken", bench::summarize(warm.launched), "ms", accel);
    bench::print_row("  of which device state loaded", bench::summarize(warm.loaded), "ms", accel);
    bench::print_row("  first exec `true` after restore", bench::summarize(warm.first_exec), "ms", accel);
    bench::print_row("baseline: QEMU restore loading all RAM", full, "ms", accel);
    bench::print_row("baseline: cold boot to exec-ready", boot, "ms", accel, "Kiln's boot path (TCG savings on)");
    auto plain = bench::summarize(plain_boot_ms);
    bench::print_row("baseline: plain QEMU cold boot, same guest", plain, "ms", accel, "kernel defaults");
    auto print_fork = [&](const char* title, const ForkRun& run, const char* target, const char* paused_target) {
        bench::print_row(title, bench::summarize(run.ready), "ms", accel, target);
        bench::print_row("  parent paused during fork", bench::summarize(run.paused), "ms", accel, paused_target);
        bench::print_row("  child QEMU up (from the fork's start)", bench::summarize(run.started), "ms", accel);
        bench::print_row("  child loaded (from the fork's start)", bench::summarize(run.loaded), "ms", accel);
    };
    print_fork("fork to child exec-ready, QEMU started per fork", plain_fork, "", "");
    print_fork("fork to child exec-ready, spare QEMU", spare_fork, "target <= 60 ms p50", "target <= 20 ms p50");
    std::printf("  (spare used in %d of %zu forks)\n", spare_fork.spares_used, spare_fork.ready.size());
    print_fork("baseline: fork, spare QEMU, parent stopped for the whole copy", stopped_fork, "the path before live forks", "");
    std::printf("ratio: stopped / live parent pause (p50)            %6.2fx\n",
                bench::summarize(stopped_fork.paused).p50 / bench::summarize(spare_fork.paused).p50);
    // The targets apply to Kiln's restore path as kilnd runs it (a spare QEMU per template, whose
    // memory the density figure below counts); the baselines start their QEMU per restore or boot,
    // as a user of plain QEMU would. The ratios of a restore that starts its own QEMU are printed too.
    std::printf("ratio: full-RAM restore / spare restore (p50)       %6.2fx  (target >= 1.5x)\n", full.p50 / spare_restore.p50);
    std::printf("ratio: plain cold boot / spare restore (p50)        %6.2fx  (target >= 20x)\n", plain.p50 / spare_restore.p50);
    std::printf("ratio: Kiln cold boot / spare restore (p50)         %6.2fx\n", boot.p50 / spare_restore.p50);
    std::printf("ratio: full-RAM restore / restore, own QEMU (p50)   %6.2fx\n", full.p50 / restore.p50);
    std::printf("ratio: plain cold boot / restore, own QEMU (p50)    %6.2fx\n", plain.p50 / restore.p50);
    std::printf("ratio: Kiln cold boot / restore, own QEMU (p50)     %6.2fx\n", boot.p50 / restore.p50);
    std::fflush(stdout);

    // Density: 20 idle clones of a 512 MiB guest against 20 cold-booted 512 MiB guests.
    std::string big = make_snapshot(root, 512);
    double spare_total = 0;
    auto measure_pss = [&](bool from_snapshot) {
        std::vector<std::unique_ptr<Vm>> vms;
        for (int i = 0; i < clones; ++i) {
            if (from_snapshot) {
                RestoreRequest req;
                req.snapshot_dir = big;
                req.spares = &spares;  // as the restores above: the spare waiting counts too
                vms.push_back(must(restore_snapshot(req), "restore clone"));
            } else {
                BootOptions options;
                options.memory_mib = 512;
                vms.push_back(must(Vm::boot(options), "boot clone"));
            }
        }
        std::this_thread::sleep_for(std::chrono::seconds(2));  // idle
        double total = 0;
        for (auto& vm : vms) total += pss_mib(vm->pid());
        if (from_snapshot) {
            for (pid_t pid : spares.pids()) spare_total += pss_mib(pid);
            spares.discard(big);
        }
        return total;
    };
    double clone_total = measure_pss(true);
    double boot_total = measure_pss(false);
    std::printf("PSS of %d idle restored clones (512 MiB guest): %8.1f MiB total, %6.1f MiB per clone (target <= 25), accel=%s\n",
                clones, clone_total, clone_total / clones, accel.c_str());
    std::printf("  with the spare QEMU waiting (%.1f MiB):        %8.1f MiB total, %6.1f MiB per clone\n", spare_total,
                clone_total + spare_total, (clone_total + spare_total) / clones);
    std::printf("PSS of %d idle cold-booted guests (512 MiB):    %8.1f MiB total, %6.1f MiB per guest, accel=%s\n", clones,
                boot_total, boot_total / clones, accel.c_str());
    std::printf("ratio: cold-booted / restored PSS              %6.2fx\n", boot_total / clone_total);
    (void)remove_tree(snap);
    (void)remove_tree(big);
    return 0;
}
