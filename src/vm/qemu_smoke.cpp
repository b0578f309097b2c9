// Starts a machine-less QEMU with the sandbox on, checks QMP answers, and quits it.
#include "vm/qemu_smoke.h"

#include <stdlib.h>

#include "base/child_process.h"
#include "base/file_util.h"
#include "vm/qemu_command.h"
#include "vm/qemu_version.h"
#include "vm/qmp_client.h"

namespace kiln::vm {

Result<QemuSmokeResult> qemu_smoke_test(const std::string& scratch_dir) {
    auto info = TRY(qemu_info());
    TRY(make_dirs(scratch_dir, 0700));
    std::string tmpl = scratch_dir + "/.qemu-smoke-XXXXXX";
    if (!::mkdtemp(tmpl.data())) return make_error(ErrorCode::IoError, "mkdtemp in " + scratch_dir);
    std::string dir = tmpl;
    auto run = [&]() -> Result<QemuSmokeResult> {
        QemuSmokeResult r;
        r.sandbox = info.sandbox;
        auto start = Clock::now();
        SpawnOptions spawn;
        spawn.argv = qemu_smoke_argv(info.binary, dir + "/qmp.sock", info.sandbox);
        spawn.stdout_fd = SpawnOptions::kDevNull;
        spawn.stderr_fd = SpawnOptions::kDevNull;
        spawn.new_session = true;
        auto qemu = TRY(ChildProcess::spawn(spawn));
        auto qmp = TRY(QmpClient::connect(dir + "/qmp.sock", Millis(10000), [&]() -> std::optional<Error> {
            if (auto s = qemu->wait_for(Millis(0))) return make_error(ErrorCode::QemuFailed, "QEMU " + s->describe());
            return std::nullopt;
        }));
        r.qmp_ready_ms = std::chrono::duration_cast<Millis>(Clock::now() - start).count();
        r.version = TRY(qmp->query_version()).to_string();
        (void)qmp->quit();
        if (!qemu->wait_for(Millis(5000))) qemu->kill_and_reap();
        return r;
    };
    auto result = run();
    (void)remove_tree(dir);
    return result;
}

}  // namespace kiln::vm
