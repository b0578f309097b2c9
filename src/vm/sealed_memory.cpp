// SealedMemory: memfd_create, the file's data extents copied in, then sealed (see sealed_memory.h).
#include "vm/sealed_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <mutex>

#include "base/errno_error.h"

namespace kiln::vm {
namespace {

constexpr unsigned kSeals = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

// Copies [offset, end) of `in` into `out` at the same offsets, in the kernel where it can.
Status copy_range(int in, int out, off_t offset, off_t end) {
    while (offset < end) {
        size_t chunk = static_cast<size_t>(std::min<off_t>(end - offset, off_t(64) << 20));
        if (::lseek(out, offset, SEEK_SET) != offset) return errno_error("seek the memfd");
        off_t from = offset;
        ssize_t n = ::sendfile(out, in, &from, chunk);
        if (n < 0) return errno_error("copy into the memfd");
        if (n == 0) return make_error(ErrorCode::IoError, "the memory file shrank while it was copied");
        offset += n;
    }
    return ok_status();
}

struct FileKey {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
    bool operator==(const FileKey&) const = default;
};

FileKey key_of(const struct stat& st) {
    return {st.st_dev, st.st_ino, st.st_size, int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

}  // namespace

Result<std::shared_ptr<const SealedMemory>> SealedMemory::from_file(const std::string& path) {
    UniqueFd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!in) return errno_error("open " + path);
    struct stat st {};
    if (::fstat(in.get(), &st) != 0) return errno_error("stat " + path);
    if (!S_ISREG(st.st_mode)) return make_error(ErrorCode::InvalidArgument, path + " is not a regular file");
    UniqueFd memfd(::memfd_create("kiln-snapshot-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!memfd) return errno_error("memfd_create");
    if (::ftruncate(memfd.get(), st.st_size) != 0) return errno_error("size the memfd");
    for (off_t data = 0;;) {
        data = ::lseek(in.get(), data, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) break;  // no data after here
            return errno_error("find data in " + path);
        }
        off_t hole = ::lseek(in.get(), data, SEEK_HOLE);
        if (hole < 0) return errno_error("find a hole in " + path);
        TRY(copy_range(in.get(), memfd.get(), data, hole));
        data = hole;
    }
    if (::fcntl(memfd.get(), F_ADD_SEALS, kSeals) != 0) return errno_error("seal the memfd");
    return std::shared_ptr<const SealedMemory>(new SealedMemory(std::move(memfd), uint64_t(st.st_size), path));
}

Result<std::shared_ptr<const SealedMemory>> sealed_memory_for(const std::string& path) {
    static std::mutex mutex;
    static std::map<std::string, std::pair<FileKey, std::weak_ptr<const SealedMemory>>> cache;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errno_error("stat " + path);
    std::lock_guard lock(mutex);
    auto it = cache.find(path);
    if (it != cache.end() && it->second.first == key_of(st)) {
        if (auto alive = it->second.second.lock()) return alive;
    }
    auto built = TRY(SealedMemory::from_file(path));
    cache[path] = {key_of(st), built};
    // Entries whose memory every VM has let go: dropped here, so the map does not grow.
    for (auto e = cache.begin(); e != cache.end();) e = e->second.second.expired() ? cache.erase(e) : std::next(e);
    return built;
}

}  // namespace kiln::vm
