// `kiln doctor`: can this host run Kiln VMs? Accelerator, QEMU and its sandbox, kernel, images, data dir.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "cli/cli_context.h"
#include "vm/accel.h"
#include "vm/disk_clone.h"
#include "vm/guest_artifacts.h"
#include "vm/jail/jail_settings.h"
#include "vm/qemu_smoke.h"
#include "vm/qemu_version.h"
#include "vm/vm.h"

namespace kiln::cli {
namespace {

using nlohmann::json;

struct DoctorOptions {
    bool json_output = false;
    bool boot = false;
    std::string image = "tiny";
};

json check_accel() {
    auto probe = vm::probe_kvm();
    json j{{"kvm_intel", probe.kvm_intel}, {"kvm_amd", probe.kvm_amd}, {"kvm_pvm", probe.kvm_pvm},
           {"dev_kvm", probe.dev_kvm_exists}};
    auto choice = vm::choose_accel(vm::AccelMode::Auto, probe);
    j["ok"] = choice.ok();
    if (choice.ok()) {
        j["accel"] = vm::accel_name(choice->accel);
        j["reason"] = choice->reason;
    } else {
        j["error"] = choice.error().message;
    }
    auto khz = vm::host_tsc_khz();
    if (khz.ok()) j["tsc_khz"] = *khz;
    else j["tsc_khz_error"] = khz.error().message;
    return j;
}

// Whether VMs started here run jailed and under seccomp (docs/security.md).
json check_confinement() {
    auto c = vm::jail::confinement();
    json j{{"jailed", c.jailed}, {"seccomp", c.seccomp}, {"vms_allowed", c.allowed}};
    j["ok"] = c.problem.empty();
    if (!c.problem.empty()) j["problem"] = c.problem;
    return j;
}

json check_qemu(const std::string& scratch) {
    json j;
    auto info = vm::qemu_info();
    j["ok"] = info.ok();
    if (!info.ok()) {
        j["error"] = info.error().message;
        return j;
    }
    j["binary"] = info->binary;
    j["version"] = info->version.to_string();
    j["sandbox_supported"] = info->sandbox;
    auto smoke = vm::qemu_smoke_test(scratch);
    j["starts"] = smoke.ok();
    if (smoke.ok()) {
        j["sandbox"] = smoke->sandbox;
        j["qmp_ready_ms"] = smoke->qmp_ready_ms;
    } else {
        j["ok"] = false;
        j["error"] = smoke.error().message;
    }
    return j;
}

json check_kernel() {
    json j;
    auto kernel = vm::find_kernel();
    j["ok"] = kernel.ok();
    if (kernel.ok()) {
        j["path"] = kernel->path;
        j["release"] = kernel->release;
        j["origin"] = kernel->origin;
    } else {
        j["error"] = kernel.error().message;
    }
    return j;
}

json check_images(const std::string& required) {
    json list = json::array();
    auto names = vm::list_images();
    if (std::find(names.begin(), names.end(), required) == names.end()) names.insert(names.begin(), required);
    for (const auto& name : names) {
        json j{{"name", name}};
        auto image = vm::find_image(name);
        j["ok"] = image.ok();
        if (image.ok()) {
            j["path"] = image->rootfs;
            j["manifest"] = path_exists(image->manifest);
        } else {
            j["state"] = image.error().code == ErrorCode::ImageCorrupt ? "corrupt" : "missing";
            j["error"] = image.error().message;
        }
        list.push_back(j);
    }
    return list;
}

json check_data_dir() {
    json j{{"path", vm::data_dir()}};
    Status made = make_dirs(vm::vms_dir(), 0711);
    j["ok"] = made.ok();
    if (!made.ok()) {
        j["error"] = made.error().message;
        return j;
    }
    auto reflink = vm::can_reflink(vm::vms_dir());
    if (reflink.ok()) {
        j["reflink"] = *reflink;
        j["disk_clone"] = *reflink ? "reflink (instant, no copy)" : "sparse copy (the file system cannot reflink)";
    } else {
        j["ok"] = false;
        j["error"] = reflink.error().message;
    }
    return j;
}

json check_boot(const std::string& image) {
    vm::BootOptions options;
    options.image = image;
    auto machine = vm::Vm::boot(options);
    if (!machine.ok()) return json{{"ok", false}, {"error", machine.error().message}};
    json j{{"ready_ms", (*machine)->timings().ready_ms}, {"agent_ready_ms", (*machine)->timings().agent_ready_ms}};
    proto::ExecRequest req;
    req.argv = {"uname", "-r"};
    auto out = (*machine)->agent().exec_collect(req);
    j["ok"] = out.ok() && out->result.exit_code == 0;
    if (out.ok()) j["uname_r"] = out->stdout_data.substr(0, out->stdout_data.find('\n'));
    else j["error"] = out.error().message;
    return j;
}

std::string mark(bool ok) { return ok ? "ok  " : "FAIL"; }

void print_human(const json& r) {
    auto line = [](const std::string& s) { std::cout << s << "\n"; };
    const json& a = r["accel"];
    line(mark(a["ok"]) + " accelerator: " + (a["ok"] ? a["accel"].get<std::string>() + " - " + a["reason"].get<std::string>()
                                                     : a["error"].get<std::string>()));
    if (a.contains("tsc_khz")) line("     host TSC: " + std::to_string(a["tsc_khz"].get<uint64_t>()) + " kHz");
    const json& q = r["qemu"];
    if (q["ok"])
        line(mark(true) + " qemu: " + q["binary"].get<std::string>() + " " + q["version"].get<std::string>() +
             ", seccomp sandbox " + (q.value("sandbox", false) ? "on" : "UNAVAILABLE") + ", QMP ready in " +
             std::to_string(q["qmp_ready_ms"].get<int64_t>()) + " ms");
    else
        line(mark(false) + " qemu: " + q["error"].get<std::string>());
    const json& c = r["confinement"];
    if (c["ok"]) line(mark(true) + " confinement: VMs run jailed (own uid, namespaces, cgroup) under seccomp");
    else line(mark(false) + " confinement: " + c["problem"].get<std::string>());
    const json& k = r["kernel"];
    if (k["ok"])
        line(mark(true) + " kernel: " + k["path"].get<std::string>() + " (release " +
             (k["release"].get<std::string>().empty() ? "unknown" : k["release"].get<std::string>()) + ")");
    else
        line(mark(false) + " kernel: " + k["error"].get<std::string>());
    for (const auto& i : r["images"]) {
        if (i["ok"]) line(mark(true) + " image " + i["name"].get<std::string>() + ": " + i["path"].get<std::string>());
        else line(mark(false) + " image " + i["name"].get<std::string>() + " (" + i["state"].get<std::string>() +
                  "): " + i["error"].get<std::string>());
    }
    const json& d = r["data_dir"];
    if (d["ok"]) line(mark(true) + " data dir: " + d["path"].get<std::string>() + ", disk clones by " +
                      d["disk_clone"].get<std::string>());
    else line(mark(false) + " data dir: " + d["path"].get<std::string>() + ": " + d["error"].get<std::string>());
    if (r.contains("boot")) {
        const json& b = r["boot"];
        if (b["ok"]) line(mark(true) + " boot: ready in " + std::to_string(b["ready_ms"].get<int64_t>()) +
                          " ms, uname -r = " + b["uname_r"].get<std::string>());
        else line(mark(false) + " boot: " + b.value("error", std::string("the test command failed")));
    }
    line(r["ready"] ? "ready: this host can run Kiln VMs" : "not ready: fix the FAIL lines above");
}

int doctor(const DoctorOptions& o) {
    json r;
    r["accel"] = check_accel();
    r["data_dir"] = check_data_dir();
    r["qemu"] = check_qemu(vm::data_dir() + "/tmp");
    r["confinement"] = check_confinement();
    r["kernel"] = check_kernel();
    r["images"] = check_images(o.image);
    bool image_ok = false;
    for (const auto& i : r["images"])
        if (i["name"] == o.image) image_ok = i["ok"];
    bool ready = r["accel"]["ok"] && r["qemu"]["ok"] && r["kernel"]["ok"] && image_ok && r["data_dir"]["ok"] &&
                 r["confinement"]["vms_allowed"];
    if (o.boot && ready) {
        r["boot"] = check_boot(o.image);
        ready = r["boot"]["ok"];
    }
    r["ready"] = ready;
    if (o.json_output) std::cout << r.dump(2) << "\n";
    else print_human(r);
    return ready ? 0 : 1;
}

}  // namespace

void add_doctor_command(CLI::App& app, CliContext& ctx) {
    auto opts = std::make_shared<DoctorOptions>();
    auto* cmd = app.add_subcommand("doctor", "Check that this host can run Kiln VMs (exit status 1 when it cannot)");
    cmd->add_flag("--json", opts->json_output, "Machine-readable output");
    cmd->add_flag("--boot", opts->boot, "Also boot a VM and run `uname -r` in it");
    cmd->add_option("--image", opts->image, "The image that must be present")->capture_default_str();
    cmd->callback([opts, &ctx] { ctx.exit_code = doctor(*opts); });
}

}  // namespace kiln::cli
