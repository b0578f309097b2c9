// NeedsTar: the needed jobs' artifacts as one tar, over libarchive (see needs_tar.h).
#include "ci/jobs/needs_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "base/unique_fd.h"

namespace kiln::ci {
namespace {

struct ArchiveWriteFree {
    void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryFree {
    void operator()(archive_entry* e) const { archive_entry_free(e); }
};

std::string archive_message(archive* a) {
    const char* m = archive_error_string(a);
    return m ? m : "unknown libarchive error";
}

Error tar_error(const std::string& what, archive* a) {
    return make_error(ErrorCode::IoError, "the needed jobs' artifacts: " + what + ": " + archive_message(a));
}

// The header of one entry: owned by root (the guest's user), 0755 folders and 0644 files.
Status write_header(archive* a, const std::string& name, bool folder, uint64_t size) {
    std::unique_ptr<archive_entry, EntryFree> entry(archive_entry_new());
    archive_entry_set_pathname(entry.get(), name.c_str());
    archive_entry_set_filetype(entry.get(), folder ? AE_IFDIR : AE_IFREG);
    archive_entry_set_perm(entry.get(), folder ? 0755 : 0644);
    archive_entry_set_size(entry.get(), folder ? 0 : static_cast<la_int64_t>(size));
    archive_entry_set_uid(entry.get(), 0);
    archive_entry_set_gid(entry.get(), 0);
    archive_entry_set_mtime(entry.get(), ::time(nullptr), 0);
    if (archive_write_header(a, entry.get()) != ARCHIVE_OK) return tar_error("adding " + name, a);
    return ok_status();
}

// Copies `size` bytes of an open file (what its fstat said: a file that shrank since is padded
// by libarchive, one that grew is cut at that size).
Status write_contents(archive* a, int fd, const std::string& name, uint64_t size) {
    char buf[64 * 1024];
    uint64_t left = size;
    while (left > 0) {
        ssize_t n = ::read(fd, buf, std::min<uint64_t>(sizeof buf, left));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return make_error(ErrorCode::IoError, "reading the artifact " + name + ": " + std::strerror(errno));
        if (n == 0) break;
        if (archive_write_data(a, buf, static_cast<size_t>(n)) != n) return tar_error("writing " + name, a);
        left -= static_cast<uint64_t>(n);
    }
    return ok_status();
}

}  // namespace

bool is_plain_relative_path(std::string_view path) {
    if (path.empty() || path.front() == '/') return false;
    size_t start = 0;
    while (start <= path.size()) {
        size_t end = path.find('/', start);
        if (end == std::string_view::npos) end = path.size();
        std::string_view part = path.substr(start, end - start);
        if (part.empty() || part == "." || part == "..") return false;
        start = end + 1;
    }
    return path.find('\0') == std::string_view::npos && path.find('\n') == std::string_view::npos;
}

Result<NeedsTarTotals> write_needs_tar(const std::string& path, const std::vector<std::string>& folders,
                                       const std::vector<NeededArtifact>& files, uint64_t max_bytes) {
    UniqueFd out(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!out) return make_error(ErrorCode::IoError, "writing " + path + ": " + std::strerror(errno));
    std::unique_ptr<archive, ArchiveWriteFree> a(archive_write_new());
    archive_write_set_format_pax_restricted(a.get());
    if (archive_write_open_fd(a.get(), out.get()) != ARCHIVE_OK) return tar_error("opening " + path, a.get());
    NeedsTarTotals totals;
    for (const auto& folder : folders) TRY(write_header(a.get(), folder + "/", true, 0));
    for (const auto& file : files) {
        // O_NOFOLLOW: an artifact path that became a symlink (it never should) is not read through.
        UniqueFd in(::open(file.host_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
        struct stat st {};
        if (!in || ::fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
            totals.left_out.push_back(file.name + ": " + (!in ? std::strerror(errno) : "not a regular file"));
            continue;
        }
        const uint64_t size = static_cast<uint64_t>(st.st_size);
        if (totals.bytes + size > max_bytes)
            return make_error(ErrorCode::TooLarge, "the needed jobs' artifacts pass " + std::to_string(max_bytes >> 20) +
                                                       " MiB (at " + file.name + ")");
        TRY(write_header(a.get(), file.name, false, size));
        TRY(write_contents(a.get(), in.get(), file.name, size));
        totals.bytes += size;
        ++totals.files;
    }
    if (archive_write_close(a.get()) != ARCHIVE_OK) return tar_error("finishing " + path, a.get());
    return totals;
}

vm::ByteSource file_byte_source(const std::string& path) {
    // Opened now: the file may then be removed before the reader is done with it.
    auto fd = std::make_shared<UniqueFd>(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    const int open_errno = errno;
    return [fd, path, open_errno](char* buf, size_t cap) -> Result<size_t> {
        if (!*fd) return make_error(ErrorCode::IoError, "opening " + path + ": " + std::strerror(open_errno));
        for (;;) {
            ssize_t n = ::read(fd->get(), buf, cap);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return make_error(ErrorCode::IoError, "reading " + path + ": " + std::strerror(errno));
            return static_cast<size_t>(n);
        }
    };
}

}  // namespace kiln::ci
