// SealedMemory: a snapshot's RAM file copied once into a sealed memfd that every VM restored or
// forked from it maps copy-on-write, jailed or not.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kiln::vm {

// Why a memfd and not the file itself: QEMU 7.2 opens a memory-backend-file read-write even with
// share=off (only `readonly=on`, which makes guest RAM read-only, opens it read-only), so a jailed
// QEMU given the file would need write access to the snapshot every clone shares. A memfd sealed
// with F_SEAL_WRITE|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL opens read-write for anyone who holds it
// (QEMU inherits the fd and opens /proc/self/fd/N) while the kernel refuses every write and every
// shared writable map of it; private writable maps work, which is all share=off needs
// (../shared/MEASURED.md, and the jail test). The cost, weighed in docs/security.md: its pages
// sit in shmem, not in the file's page cache (the same pages, but reclaimable only to swap), and
// each kilnd builds it again after a restart (first restore of a snapshot: one copy of the file's
// data extents, tens of ms; the spare pool does it ahead of the first create).
class SealedMemory {
public:
    int fd() const { return m_fd.get(); }
    uint64_t size() const { return m_size; }
    const std::string& source() const { return m_source; }
    // QEMU's mem-path for this memory, valid in a process that inherited fd() under its number.
    std::string qemu_path() const { return "/proc/self/fd/" + std::to_string(m_fd.get()); }

    // Builds one from the file at `path` (data extents only: holes stay holes).
    static Result<std::shared_ptr<const SealedMemory>> from_file(const std::string& path);

private:
    SealedMemory(UniqueFd fd, uint64_t size, std::string source)
        : m_fd(std::move(fd)), m_size(size), m_source(std::move(source)) {}
    UniqueFd m_fd;
    uint64_t m_size;
    std::string m_source;
};

// The SealedMemory of the file at `path`, shared while any VM maps it: built on first use and again
// when the file was replaced or changed (device, inode, size, mtime). Thread-safe.
Result<std::shared_ptr<const SealedMemory>> sealed_memory_for(const std::string& path);

}  // namespace kiln::vm
