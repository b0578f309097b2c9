// TemplateBaker: the built-in templates (tiny; base, the Debian CI image), each baked once into a snapshot in
// $DATA/templates/<name>-<key> by booting its image and snapshotting it. The key covers the image,
// kernel, QEMU version and accelerator, so a change to any of them bakes again.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "daemon/net/lazy_network_manager.h"
#include "daemon/net/spare_networks.h"
#include "vm/accel.h"
#include "vm/spare_pool.h"

namespace kiln::daemon {

struct BuiltinTemplate {
    std::string name;
    std::string image;
    uint32_t vcpus = 1;
    uint32_t memory_mib = 256;
    // Baked when kilnd starts (tiny); otherwise on first use (base: its image is built only when
    // CI is used, `make image-base`).
    bool bake_at_start = true;
};

// Each built-in has two variants, baked separately: without a NIC (what creates with network mode
// none use: no device, and a spare QEMU), and with one ("<name>+net", baked on first use: eth0 up
// and addressed the same in every sandbox, docs/network.md), for creates that need a network (a
// spare QEMU too, whose network is made ahead: SpareNetworks).
// Thread-safe. Concurrent ensure() calls for one variant share one bake.
class TemplateBaker {
public:
    // `networks` is needed only by NIC bakes (which fail `unavailable` without it). With `spares`,
    // each NIC-less bake gets a spare QEMU started in that pool (it must outlive the baker), and
    // with `spare_networks` too each NIC bake gets one with a network made ahead.
    TemplateBaker(std::string templates_dir, vm::AccelMode accel, vm::SparePool* spares,
                  net::LazyNetworkManager* networks = nullptr, net::SpareNetworks* spare_networks = nullptr);
    ~TemplateBaker();  // stop()

    const std::vector<BuiltinTemplate>& builtins() const { return m_builtins; }
    const BuiltinTemplate* find(const std::string& name) const;

    // The baked snapshot's directory, baking it now if it is missing (or waiting for the bake in
    // progress). template_not_found for an unknown name; the bake's error if it fails.
    Result<std::string> ensure(const std::string& name, bool nic = false);
    // The directory if baked, without baking.
    std::optional<std::string> baked_dir(const std::string& name, bool nic = false);
    int64_t baked_at_ms(const std::string& name);
    // ensure() on a thread of its own; errors are logged.
    void bake_in_background(const std::string& name);
    // Drops the bake (and its spare QEMU); the next ensure() bakes again. Sandboxes already
    // restored from it keep running (their RAM maps the deleted file, their disk is a copy).
    Status drop(const std::string& name);
    // Abandons a bake in progress and joins the background threads. Idempotent.
    void stop();

    // <image key>|<kernel release>|<QEMU version>|<accel>, hashed to 16 hex digits.
    Result<std::string> key(const BuiltinTemplate& tmpl);

private:
    struct BakeState {
        bool baking = false;
        uint64_t generation = 0;  // bakes finished
        std::string last_error;   // of the last finished bake, empty on success
    };
    Result<std::string> bake(const BuiltinTemplate& tmpl, bool nic, const std::string& dir);
    // $templates/<variant>-<key>; the variant is the name, or "<name>+net" with a NIC.
    Result<std::string> dir_for(const BuiltinTemplate& tmpl, bool nic);

    const std::string m_templates_dir;
    const vm::AccelMode m_accel;
    vm::SparePool* const m_spares;
    net::LazyNetworkManager* const m_networks;
    net::SpareNetworks* const m_spare_networks;
    std::vector<BuiltinTemplate> m_builtins;
    std::atomic<bool> m_cancel{false};

    std::mutex m_mutex;  // guards m_state, m_threads, m_key_cache
    std::condition_variable m_changed;
    std::map<std::string, BakeState> m_state;  // by variant
    std::map<std::string, std::string> m_key_cache;  // name -> key (the inputs do not change while we run)
    std::vector<std::thread> m_threads;
};

}  // namespace kiln::daemon
