// SparePool: one worker thread starting QEMUs ahead for snapshots, handed out to restores and forks.
#include "vm/spare_pool.h"

#include <sys/stat.h>

#include "base/random.h"
#include "vm/clone_launch.h"
#include "vm/guest_artifacts.h"

namespace kiln::vm {

std::optional<SparePool::FileId> SparePool::file_id(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return FileId{st.st_dev, st.st_ino, st.st_size, int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

SparePool::SnapshotFileIds SparePool::snapshot_file_ids(const std::string& dir) {
    return {file_id(dir + "/" + kStateFileName), file_id(dir + "/" + kMemoryFileName), file_id(dir + "/" + kDiskFileName)};
}

std::unique_ptr<Vm> SparePool::take(const std::string& dir, const SnapshotManifest& manifest, std::unique_ptr<SpareNic>* nic,
                                    bool* warm) {
    // A warm spare being started may still be a second or more from ready (it loads and runs the
    // guest): only a cold one being started is waited for.
    auto vm = m_warm ? take_one({dir, true}, manifest, nic, /*wait=*/false) : nullptr;
    if (warm) *warm = vm != nullptr;
    if (!vm) vm = take_one({dir, false}, manifest, nic, /*wait=*/true);
    return vm;
}

std::unique_ptr<Vm> SparePool::take_cold(const std::string& dir, const SnapshotManifest& manifest) {
    return take_one({dir, false}, manifest, nullptr, /*wait=*/true);
}

std::unique_ptr<Vm> SparePool::take_one(const Key& key, const SnapshotManifest& manifest, std::unique_ptr<SpareNic>* nic,
                                        bool wait) {
    Spare spare;
    {
        std::unique_lock lock(m_mutex);
        if (wait) m_cv.wait_for(lock, Millis(2000), [&] { return m_starting != key; });
        auto it = m_spares.find(key);
        if (it == m_spares.end()) return nullptr;
        if ((it->second.nic != nullptr) != (nic != nullptr)) return nullptr;  // left for the right caller
        spare = std::move(it->second);
        m_spares.erase(it);
    }
    if (spare.manifest_id != manifest.id || snapshot_file_ids(key.first) != spare.files || !spare.vm->qemu_alive())
        return nullptr;  // stale or dead: destroyed here
    if (nic) *nic = std::move(spare.nic);
    return std::move(spare.vm);
}

void SparePool::prepare(const std::string& dir, SpareNicSource nic) {
    std::lock_guard lock(m_mutex);
    if (nic) m_nic_sources[dir] = std::move(nic);
    queue({dir, m_warm});
}

void SparePool::prepare_cold(const std::string& dir) {
    std::lock_guard lock(m_mutex);
    queue({dir, false});
}

void SparePool::queue(Key key) {
    if (m_spares.count(key) || m_starting == key) return;
    for (const auto& queued : m_queue)
        if (queued == key) return;
    m_queue.push_back(std::move(key));
    if (!m_worker.joinable()) m_worker = std::thread([this] { run_worker(); });
    m_cv.notify_all();
}

void SparePool::discard(const std::string& dir) {
    std::vector<Spare> doomed;  // destroyed (QEMU killed, run dir removed) once the lock is released
    {
        std::unique_lock lock(m_mutex);
        std::erase_if(m_queue, [&](const Key& q) { return dir.empty() || q.first == dir; });
        if (dir.empty()) m_nic_sources.clear();
        else m_nic_sources.erase(dir);
        m_cv.wait(lock, [&] { return m_starting.first.empty() || (!dir.empty() && m_starting.first != dir); });
        for (auto it = m_spares.begin(); it != m_spares.end();) {
            if (dir.empty() || it->first.first == dir) {
                doomed.push_back(std::move(it->second));
                it = m_spares.erase(it);
            } else {
                ++it;
            }
        }
    }
}

bool SparePool::keeps_spares_for(const std::string& dir) {
    std::lock_guard lock(m_mutex);
    if (m_starting.first == dir) return true;
    for (const auto& queued : m_queue)
        if (queued.first == dir) return true;
    for (const auto& [key, spare] : m_spares)
        if (key.first == dir) return true;
    return false;
}

std::vector<pid_t> SparePool::pids() {
    std::lock_guard lock(m_mutex);
    std::vector<pid_t> out;
    for (const auto& [dir, spare] : m_spares) out.push_back(spare.vm->pid());
    return out;
}

SparePool::~SparePool() {
    {
        std::lock_guard lock(m_mutex);
        m_stop = true;
        m_queue.clear();
        m_cv.notify_all();
    }
    if (m_worker.joinable()) m_worker.join();
    m_spares.clear();
}

void SparePool::run_worker() {
    std::unique_lock lock(m_mutex);
    for (;;) {
        m_cv.wait(lock, [&] { return m_stop || !m_queue.empty(); });
        if (m_stop) return;
        Key key = std::move(m_queue.front());
        m_queue.pop_front();
        m_starting = key;
        SpareNicSource nic;
        if (auto it = m_nic_sources.find(key.first); it != m_nic_sources.end()) nic = it->second;
        lock.unlock();
        auto spare = start(key, nic);
        lock.lock();
        m_starting = {};
        if (spare && !m_stop) m_spares[key] = std::move(*spare);
        m_cv.notify_all();
        if (spare && m_stop) {
            lock.unlock();
            spare.reset();
            lock.lock();
        }
    }
}

std::optional<SparePool::Spare> SparePool::start(const Key& key, const SpareNicSource& nic_source) {
    const std::string& dir = key.first;
    SnapshotFileIds files = snapshot_file_ids(dir);
    auto manifest = load_and_verify(dir, VerifyLevel::Sizes);
    if (!manifest.ok()) return std::nullopt;
    if (manifest->nic && !nic_source) return std::nullopt;  // its restores bring their own NIC
    auto kernel = find_kernel();
    auto id = random_hex(6);
    if (!kernel.ok() || !id.ok()) return std::nullopt;
    Spare spare;
    std::optional<NetDevice> device;
    if (manifest->nic) {
        auto made = nic_source();
        if (!made.ok() || !*made) return std::nullopt;
        spare.nic = std::move(*made);
        device = spare.nic->device();
    }
    auto vm = launch_for_snapshot(dir, *manifest, *kernel, *id, device);
    if (!vm.ok()) return std::nullopt;  // the NIC made for it goes too
    spare.vm = std::move(*vm);
    if (key.second && !warm_up_spare(*spare.vm).ok()) return std::nullopt;  // its restore loads a cold QEMU's
    if (snapshot_file_ids(dir) != files) return std::nullopt;  // changed while we started
    spare.manifest_id = manifest->id;
    spare.files = files;
    return spare;
}

}  // namespace kiln::vm
