// TemplateBaker: baking, caching and dropping the built-in templates (see template_baker.h).
#include "daemon/templates/template_baker.h"

#include <sys/stat.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/json_log.h"
#include "base/random.h"
#include "base/sha256.h"
#include "daemon/net/guest_addressing.h"
#include "daemon/sandboxes/sandbox_service.h"
#include "vm/guest_artifacts.h"
#include "vm/qemu_version.h"
#include "vm/snapshot.h"
#include "vm/snapshot_manifest.h"
#include "vm/vm.h"

namespace kiln::daemon {

namespace {

std::string variant_name(const std::string& name, bool nic) { return nic ? name + "+net" : name; }

}  // namespace

TemplateBaker::TemplateBaker(std::string templates_dir, vm::AccelMode accel, vm::SparePool* spares,
                             net::LazyNetworkManager* networks, net::SpareNetworks* spare_networks)
    : m_templates_dir(std::move(templates_dir)), m_accel(accel), m_spares(spares), m_networks(networks),
      m_spare_networks(spare_networks) {
    m_builtins.push_back(BuiltinTemplate{"tiny", "tiny", 1, 256, true});
    m_builtins.push_back(BuiltinTemplate{"base", "base", 1, 512, false});  // CI jobs (docs/ci.md)
}

TemplateBaker::~TemplateBaker() { stop(); }

const BuiltinTemplate* TemplateBaker::find(const std::string& name) const {
    for (const auto& t : m_builtins)
        if (t.name == name) return &t;
    return nullptr;
}

Result<std::string> TemplateBaker::key(const BuiltinTemplate& tmpl) {
    {
        std::lock_guard lock(m_mutex);
        if (auto it = m_key_cache.find(tmpl.name); it != m_key_cache.end()) return it->second;
    }
    auto image = TRY(vm::find_image(tmpl.image));
    std::string image_key;
    if (auto m = read_file(image.manifest, 64 * 1024); m.ok()) {
        auto j = nlohmann::json::parse(*m, nullptr, false);
        if (j.is_object() && j.contains("key") && j["key"].is_string()) image_key = j["key"].get<std::string>();
    }
    if (image_key.empty()) {  // an image without a manifest: its size and mtime stand in
        struct stat st {};
        if (::stat(image.rootfs.c_str(), &st) == 0)
            image_key = std::to_string(st.st_size) + "@" + std::to_string(st.st_mtim.tv_sec);
    }
    auto kernel = TRY(vm::find_kernel());
    auto qemu = TRY(vm::qemu_info());
    auto accel = TRY(vm::choose_accel(m_accel));
    std::string text = image_key + "|" + kernel.release + "|" + qemu.version.to_string() + "|" + vm::accel_name(accel.accel) +
                       "|" + std::to_string(tmpl.vcpus) + "x" + std::to_string(tmpl.memory_mib) +
                       (vm::guest_aslr_requested() ? "|aslr" : "|norandmaps") +
                       "|apictimer";  // bakes from before templates kept the APIC timer ticked from the PIT
    std::string k = sha256_hex(text).substr(0, 16);
    std::lock_guard lock(m_mutex);
    m_key_cache[tmpl.name] = k;
    return k;
}

Result<std::string> TemplateBaker::dir_for(const BuiltinTemplate& tmpl, bool nic) {
    std::string k = TRY(key(tmpl));
    // The NIC variant also depends on what its bake runs in the guest.
    if (nic) k = sha256_hex(k + "|" + net::guest_setup_command()).substr(0, 16);
    return m_templates_dir + "/" + variant_name(tmpl.name, nic) + "-" + k;
}

std::optional<std::string> TemplateBaker::baked_dir(const std::string& name, bool nic) {
    const BuiltinTemplate* tmpl = find(name);
    if (!tmpl) return std::nullopt;
    auto dir = dir_for(*tmpl, nic);
    if (!dir.ok() || !path_exists(*dir + "/" + vm::kManifestFileName)) return std::nullopt;
    return *dir;
}

int64_t TemplateBaker::baked_at_ms(const std::string& name) {
    auto dir = baked_dir(name);
    if (!dir) return 0;
    auto text = read_file(*dir + "/" + vm::kManifestFileName, vm::kMaxManifestBytes);
    if (!text.ok()) return 0;
    auto m = vm::parse_manifest(*text);
    return m.ok() ? m->created_unix_ms : 0;
}

Result<std::string> TemplateBaker::ensure(const std::string& name, bool nic) {
    const BuiltinTemplate* tmpl = find(name);
    if (!tmpl) return make_error(ErrorCode::TemplateNotFound, "no template '" + name + "'");
    std::string dir = TRY(dir_for(*tmpl, nic));
    std::unique_lock lock(m_mutex);
    BakeState& state = m_state[variant_name(name, nic)];
    uint64_t seen = state.generation;
    for (;;) {
        if (path_exists(dir + "/" + vm::kManifestFileName)) return dir;
        if (m_cancel) return make_error(ErrorCode::Unavailable, "kilnd is shutting down");
        if (!state.baking) {
            // A bake we waited for failed: report its error rather than start another at once.
            if (state.generation != seen && !state.last_error.empty())
                return make_error(ErrorCode::Internal, "baking template " + name + ": " + state.last_error);
            break;
        }
        m_changed.wait(lock);
    }
    state.baking = true;
    lock.unlock();
    auto baked = bake(*tmpl, nic, dir);
    lock.lock();
    state.baking = false;
    state.generation++;
    state.last_error = baked.ok() ? "" : baked.error().to_string();
    m_changed.notify_all();
    if (!baked.ok())
        return make_error(baked.error().code == ErrorCode::Unavailable ? ErrorCode::Unavailable : ErrorCode::Internal,
                          "baking template " + name + ": " + baked.error().to_string());
    return dir;
}

Result<std::string> TemplateBaker::bake(const BuiltinTemplate& tmpl, bool nic, const std::string& dir) {
    auto start = Clock::now();
    const std::string variant = variant_name(tmpl.name, nic);
    log::info("template bake started", {{"template", variant}, {"dir", dir}});
    TRY(make_dirs(m_templates_dir, 0700));
    // Older bakes of this variant (another image, kernel or QEMU) are of no use any more.
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(m_templates_dir, ec)) {
        std::string file = entry.path().filename().string();
        if (file.rfind(variant + "-", 0) == 0 && entry.path().string() != dir) {
            if (m_spares) m_spares->discard(entry.path().string());
            (void)remove_tree(entry.path().string());
        }
    }
    vm::BootOptions options;
    options.image = tmpl.image;
    options.vcpus = tmpl.vcpus;
    options.memory_mib = tmpl.memory_mib;
    options.accel = m_accel;
    options.snapshottable = true;
    options.cancel = &m_cancel;
    // A NIC bake's network lets nothing out (mode none): it exists only so the NIC does.
    std::unique_ptr<net::SandboxNetwork> network;
    if (nic) {
        if (!m_networks) return make_error(ErrorCode::Unavailable, "sandbox networking is not configured in this kilnd");
        // Named after this kilnd's data dir (the templates dir's parent), so only its reconcile sweeps it.
        std::string data_dir = std::filesystem::path(m_templates_dir).parent_path().string();
        auto made = m_networks->setup(net::local_network_prefix("bake", data_dir) + TRY(random_hex(4)), net::NetworkPolicy{});
        if (!made.ok()) {
            log::error("template bake failed", {{"template", variant}, {"step", "network"}, {"error", made.error().to_string()}});
            return std::move(made).error();
        }
        network = std::move(*made);
        options.net = network->nic();
    }
    auto booted = vm::Vm::boot(options);
    if (network) network->close_tap();  // QEMU has its copy (or failed)
    if (!booted.ok()) {
        log::error("template bake failed", {{"template", variant}, {"step", "boot"}, {"error", booted.error().to_string()}});
        return std::move(booted).error();
    }
    if (nic) {
        proto::ExecRequest setup;
        setup.shell = net::guest_setup_command();
        setup.timeout_ms = 30000;
        auto out = (*booted)->agent().exec_collect(setup);
        Status configured = out.ok() ? Status(ok_status()) : Status(out.error());
        if (out.ok() && out->result.exit_code != 0)
            configured = make_error(ErrorCode::BakeFailed, "the guest's network set-up exited " + std::to_string(out->result.exit_code) +
                                                       ": " + out->stderr_data.substr(0, 500));
        if (!configured.ok()) {
            (*booted)->destroy();
            log::error("template bake failed", {{"template", variant}, {"step", "guest network"}, {"error", configured.error().to_string()}});
            return configured.error();
        }
    }
    vm::SnapshotRequest request;
    request.dir = dir;
    request.id = (nic ? tmpl.name + "-net" : tmpl.name) + "-" + dir.substr(dir.rfind('-') + 1);
    request.resume = false;
    request.checksums = false;  // restores check sizes; hashing 256 MiB would add seconds to every bake
    auto manifest = vm::take_snapshot(**booted, request);
    const vm::BootTimings boot = (*booted)->timings();
    (*booted)->destroy();
    if (!manifest.ok()) {
        log::error("template bake failed", {{"template", variant}, {"step", "snapshot"}, {"error", manifest.error().to_string()}});
        return std::move(manifest).error();
    }
    auto ms = std::chrono::duration_cast<Millis>(Clock::now() - start).count();
    // The tick device decides what an idle clone costs under TCG (Vm::boot): "pit" is worth a look.
    log::info("template baked", {{"template", variant}, {"dir", dir}, {"ms", ms}, {"tick_device", boot.tick_device},
                                 {"boot_attempts", boot.boot_attempts}});
    if (m_spares && !nic) m_spares->prepare(dir);
    if (m_spares && nic && m_spare_networks) m_spares->prepare(dir, m_spare_networks->source());
    return dir;
}

void TemplateBaker::bake_in_background(const std::string& name) {
    std::lock_guard lock(m_mutex);
    if (m_cancel) return;
    m_threads.emplace_back([this, name] {
        auto dir = ensure(name);
        if (!dir.ok()) {
            if (dir.error().code != ErrorCode::Unavailable)
                log::error("background bake failed", {{"template", name}, {"error", dir.error().to_string()}});
        } else if (m_spares) {
            m_spares->prepare(*dir);  // a bake from an earlier run: start its spare now
        }
    });
}

Status TemplateBaker::drop(const std::string& name) {
    const BuiltinTemplate* tmpl = find(name);
    if (!tmpl) return make_error(ErrorCode::NotFound, "no template '" + name + "'");
    std::unique_lock lock(m_mutex);
    m_changed.wait(lock, [&] { return !m_state[name].baking && !m_state[variant_name(name, true)].baking; });
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(m_templates_dir, ec)) {
        std::string file = entry.path().filename().string();
        if (file.rfind(tmpl->name + "-", 0) == 0 || file.rfind(variant_name(tmpl->name, true) + "-", 0) == 0) {
            if (m_spares) m_spares->discard(entry.path().string());
            TRY(remove_tree(entry.path().string()));
        }
    }
    log::info("template dropped", {{"template", name}});
    return ok_status();
}

void TemplateBaker::stop() {
    std::vector<std::thread> threads;
    {
        std::lock_guard lock(m_mutex);
        m_cancel = true;
        m_changed.notify_all();
        threads.swap(m_threads);
    }
    for (auto& t : threads)
        if (t.joinable()) t.join();
}

}  // namespace kiln::daemon
