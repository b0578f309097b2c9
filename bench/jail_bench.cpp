// Jail benchmark: what the jail (src/vm/jail) costs, measured on one snapshot in one run with the
// jail on and off, alternated round by round so both see the same host load. Figures: restore to
// exec-ready with a QEMU started per restore (the jail set-up is on that path) and with a spare
// started ahead (the path of a create: no jail set-up on it), QEMU start-up alone, fork of a
// restored parent with and without a spare, and the PSS of idle clones. Ratios: jailed / unjailed.
#include <unistd.h>

#include <fstream>
#include <thread>

#include "base/file_util.h"
#include "base/random.h"
#include "bench_util.h"
#include "bench_vm.h"
#include "stats.h"
#include "vm/accel.h"
#include "vm/guest_artifacts.h"
#include "base/child_process.h"
#include "vm/jail/jail_settings.h"
#include "vm/jail/jail_spawn.h"
#include "vm/snapshot.h"
#include "vm/spare_pool.h"

using namespace kiln;
using namespace kiln::vm;
using namespace kiln::bench;

namespace {


void set_jail(bool on) {
    jail::JailSettings s = jail::jail_settings();
    s.jail = on;
    s.allow_unconfined = !on;  // the unjailed baseline must be allowed to run
    jail::set_jail_settings(s);
}

void wait_for_spare(SparePool& pool) {
    auto deadline = Clock::now() + std::chrono::seconds(20);
    while (pool.pids().empty() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (pool.pids().empty()) fail("no spare QEMU within 20 s");
}

// One mode's samples.
struct Mode {
    const char* name;
    bool jailed;
    SparePool spares;  // started and refilled only while this mode is set
    std::vector<double> spawn, restore, launched, spare_restore, fork, spare_fork, pss, stream;
};

// Starts /usr/bin/true and waits for it: in its jail (what a QEMU's jail costs to set up, with the
// namespaces' teardown after it) or as a plain child.
double spawn_true(bool jailed) {
    auto start = Clock::now();
    std::unique_ptr<ChildProcess> child;
    if (jailed) {
        jail::JailSpec spec;
        spec.uid = spec.gid = 2100000000;
        spec.argv = {"/usr/bin/true"};
        child = must(jail::spawn_jailed(spec), "spawn jailed");
    } else {
        SpawnOptions options;
        options.argv = {"/usr/bin/true"};
        child = must(ChildProcess::spawn(options), "spawn");
    }
    if (!child->wait_for(Millis(10000))) fail("true did not exit");
    return ms_since(start);
}

}  // namespace

int main() {
    const int rounds = env_int("KILN_BENCH_JAIL_ROUNDS", 30);
    const int forks = env_int("KILN_BENCH_JAIL_FORKS", 10);
    const int clones = env_int("KILN_BENCH_JAIL_CLONES", 8);
    if (::geteuid() != 0) fail("the jail needs root");
    std::string accel = accel_name(must(choose_accel(AccelMode::Auto), "accel").accel);
    std::string root = vms_dir() + "/../bench-jail-" + must(random_hex(4), "id");
    must(Result<Ok>(make_dirs(root)), "mkdir");
    std::printf("# kiln jail_bench: 256 MiB guest, 1 vCPU, image tiny, accel=%s, jailed vs unjailed alternated\n",
                accel.c_str());
    std::string snap = root + "/snap";
    {
        BootOptions options;
        options.snapshottable = true;
        auto vm = must(Vm::boot(options), "boot");
        SnapshotRequest req;
        req.dir = snap;
        req.resume = false;
        must(take_snapshot(*vm, req), "snapshot");
    }
    Mode modes[2] = {{"jailed", true, SparePool(), {}, {}, {}, {}, {}, {}, {}, {}}, {"unjailed", false, SparePool(), {}, {}, {}, {}, {}, {}, {}, {}}};
    for (int i = 0; i < 4 * rounds; ++i)
        for (Mode& m : modes) m.spawn.push_back(spawn_true(m.jailed));

    // Restores: per round, each mode once without and once with its spare.
    for (int i = 0; i < rounds + 2; ++i) {
        const bool record = i >= 2;  // the first rounds warm the page cache and the sealed memory
        for (Mode& m : modes) {
            set_jail(m.jailed);
            RestoreRequest req;
            req.snapshot_dir = snap;
            RestoreTimings t;
            auto start = Clock::now();
            auto vm = must(restore_snapshot(req, &t), "restore");
            double ready = ms_since(start);
            exec_true(*vm);
            vm.reset();
            if (record) {
                m.restore.push_back(ready);
                m.launched.push_back(double(t.launched_ms));
            }
            m.spares.prepare(snap);
            wait_for_spare(m.spares);
            req.spares = &m.spares;
            start = Clock::now();
            vm = must(restore_snapshot(req, &t), "restore with a spare");
            ready = ms_since(start);
            if (!t.spare) fail("the restore did not take the spare");
            exec_true(*vm);
            vm.reset();
            wait_for_spare(m.spares);  // its refill runs in this mode, before the next one
            if (record) m.spare_restore.push_back(ready);
        }
    }
    // Forks of a restored parent (one per mode), with and without the snapshot's spare, the modes
    // alternated fork by fork.
    std::unique_ptr<Vm> parents[2];
    for (int k = 0; k < 2; ++k) {
        set_jail(modes[k].jailed);
        RestoreRequest req;
        req.snapshot_dir = snap;
        parents[k] = must(restore_snapshot(req), "restore parent");
    }
    for (int i = 0; i < 2 * forks; ++i) {
        bool use_spare = i % 2 == 1;
        for (int k = 0; k < 2; ++k) {
            Mode& m = modes[k];
            set_jail(m.jailed);
            wait_for_spare(m.spares);
            ForkRequest fork_request;
            if (use_spare) fork_request.spares = &m.spares;
            ForkTimings t;
            auto child = must(fork_vm(*parents[k], fork_request, &t), "fork");
            (use_spare ? m.spare_fork : m.fork).push_back(double(t.child_ready_ms));
            child.reset();
            wait_for_spare(m.spares);  // a taken spare refills in this mode
        }
    }
    for (auto& p : parents) p.reset();
    // Guest output through the agent (every syscall of QEMU's I/O path passes both seccomp filters):
    // 32 MiB of stdout collected, per mode in turns.
    {
        std::unique_ptr<Vm> vms[2];
        for (int k = 0; k < 2; ++k) {
            set_jail(modes[k].jailed);
            RestoreRequest req;
            req.snapshot_dir = snap;
            vms[k] = must(restore_snapshot(req), "restore for output");
        }
        for (int i = 0; i < std::max(3, forks / 2); ++i)
            for (int k = 0; k < 2; ++k) {
                proto::ExecRequest req;
                req.shell = "head -c 33554432 /dev/zero";
                req.output_limit = uint64_t(64) << 20;
                auto start = Clock::now();
                auto out = must(vms[k]->agent().exec_collect(req, std::nullopt, size_t(64) << 20), "exec head");
                double s = ms_since(start) / 1000.0;
                if (out.stdout_data.size() != (size_t(32) << 20)) fail("short output");
                modes[k].stream.push_back(32.0 / s);
            }
    }
    // PSS of idle clones.
    for (Mode& m : modes) {
        set_jail(m.jailed);
        std::vector<std::unique_ptr<Vm>> vms;
        for (int i = 0; i < clones; ++i) {
            RestoreRequest req;
            req.snapshot_dir = snap;
            vms.push_back(must(restore_snapshot(req), "clone"));
            exec_true(*vms.back());
        }
        std::this_thread::sleep_for(std::chrono::seconds(2));
        for (auto& vm : vms) m.pss.push_back(pss_mib(vm->pid()));
        m.spares.discard();
    }

    Mode& j = modes[0];
    Mode& u = modes[1];
    auto row = [&](const char* what, std::vector<double> Mode::*samples, const char* unit, const std::string& target) {
        auto js = summarize(j.*samples);
        auto us = summarize(u.*samples);
        print_row(std::string(what) + ", jailed", js, unit, accel);
        print_row(std::string(what) + ", unjailed", us, unit, accel);
        std::printf("%-44s p50 %6.2fx  p99 %6.2fx  (+%.1f %s p50)%s%s\n", (std::string("  ratio jailed / unjailed")).c_str(),
                    js.p50 / us.p50, js.p99 / us.p99, js.p50 - us.p50, unit, target.empty() ? "" : "  target ",
                    target.c_str());
        std::fflush(stdout);
    };
    row("start /usr/bin/true and wait for it", &Mode::spawn, "ms", "jail set-up <= 5 ms");
    row("restore to exec-ready, QEMU started per restore", &Mode::restore, "ms", "");
    row("  of which QEMU started, sockets connected", &Mode::launched, "ms", "jail set-up <= 5 ms off a spare's path");
    row("restore to exec-ready, spare QEMU (a create)", &Mode::spare_restore, "ms", "<= 1.1x");
    row("fork to child exec-ready, QEMU started per fork", &Mode::fork, "ms", "<= 1.1x");
    row("fork to child exec-ready, spare QEMU", &Mode::spare_fork, "ms", "<= 1.1x");
    row("PSS per idle clone (256 MiB guest)", &Mode::pss, "MiB", "no worse than unjailed");
    row("guest stdout through the agent, 32 MiB", &Mode::stream, "MiB/s", "(higher is better)");
    (void)remove_tree(root);
    return 0;
}
