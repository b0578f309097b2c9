// pack_folder / unpack_into over libarchive.
#include "cli/tar_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include "cli/cli_context.h"

namespace kiln::cli {
namespace {

Error tar_error(const std::string& message) { return make_error(ErrorCode::CliIo, message); }

struct ArchiveReadCloser {
    void operator()(archive* a) const { archive_read_free(a); }
};
struct ArchiveWriteCloser {
    void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryFree {
    void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using ReadArchive = std::unique_ptr<archive, ArchiveReadCloser>;
using WriteArchive = std::unique_ptr<archive, ArchiveWriteCloser>;

std::string archive_message(archive* a) {
    const char* m = archive_error_string(a);
    return m ? m : "unknown libarchive error";
}

Result<UniqueFd> temp_file() {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string dir = tmpdir && *tmpdir ? tmpdir : "/tmp";
    int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return tar_error("cannot make a temp file in " + dir + ": " + std::strerror(errno));
    return UniqueFd(fd);
}

// Copies one regular file's bytes into the archive.
Status write_file_data(archive* a, const std::string& path) {
    UniqueFd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!in) return tar_error("cannot read " + path + ": " + std::strerror(errno));
    char buf[64 * 1024];
    for (;;) {
        ssize_t n = ::read(in.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return tar_error("cannot read " + path + ": " + std::strerror(errno));
        if (n == 0) return ok_status();
        if (archive_write_data(a, buf, static_cast<size_t>(n)) != n)
            return tar_error("writing the tarball failed: " + archive_message(a));
    }
}

// Adds one path (already lstat'ed) under `name`.
Status add_entry(archive* a, const std::string& path, const std::string& name, const struct stat& st,
                 uint64_t& entries) {
    std::unique_ptr<archive_entry, EntryFree> entry(archive_entry_new());
    archive_entry_copy_stat(entry.get(), &st);
    archive_entry_set_pathname(entry.get(), name.c_str());
    archive_entry_set_uid(entry.get(), 0);  // the guest user owns what it gets
    archive_entry_set_gid(entry.get(), 0);
    archive_entry_set_nlink(entry.get(), 1);
    if (S_ISLNK(st.st_mode)) {
        std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
        ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
        if (n < 0) return tar_error("cannot read link " + path + ": " + std::strerror(errno));
        target.resize(static_cast<size_t>(n));
        archive_entry_set_symlink(entry.get(), target.c_str());
        archive_entry_set_size(entry.get(), 0);
    } else if (!S_ISREG(st.st_mode)) {
        archive_entry_set_size(entry.get(), 0);
    }
    if (archive_write_header(a, entry.get()) != ARCHIVE_OK)
        return tar_error("cannot add " + path + " to the tarball: " + archive_message(a));
    if (S_ISREG(st.st_mode)) TRY(write_file_data(a, path));
    ++entries;
    return ok_status();
}

}  // namespace

Result<PackedTar> pack_folder(const std::string& folder, const std::string& prefix) {
    namespace fs = std::filesystem;
    PackedTar out;
    out.fd = TRY(temp_file());
    WriteArchive a(archive_write_new());
    archive_write_set_format_pax_restricted(a.get());
    if (archive_write_open_fd(a.get(), out.fd.get()) != ARCHIVE_OK)
        return tar_error("cannot write the tarball: " + archive_message(a.get()));

    struct stat root;
    if (::lstat(folder.c_str(), &root) != 0) return tar_error("cannot read " + folder + ": " + std::strerror(errno));
    if (!prefix.empty()) TRY(add_entry(a.get(), folder, prefix, root, out.entries));

    std::error_code ec;
    fs::recursive_directory_iterator it(folder, fs::directory_options::none, ec), end;
    if (ec) return tar_error("cannot list " + folder + ": " + ec.message());
    for (; it != end; it.increment(ec)) {
        if (ec) return tar_error("cannot list " + folder + ": " + ec.message());
        std::string path = it->path().string();
        // Lexically: fs::relative() would resolve a symlink to its target's name.
        std::string rel = it->path().lexically_relative(fs::path(folder)).generic_string();
        if (rel.empty() || rel.rfind("..", 0) == 0) return tar_error("cannot name " + path + " inside " + folder);
        struct stat st;
        if (::lstat(path.c_str(), &st) != 0) return tar_error("cannot read " + path + ": " + std::strerror(errno));
        if (S_ISSOCK(st.st_mode)) {
            print_error("skipping socket " + path);
            continue;
        }
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
            return tar_error(path + " is a device or fifo; kilnd accepts only files, folders and symlinks");
        TRY(add_entry(a.get(), path, prefix + rel + (S_ISDIR(st.st_mode) ? "/" : ""), st, out.entries));
    }
    if (archive_write_close(a.get()) != ARCHIVE_OK)
        return tar_error("cannot finish the tarball: " + archive_message(a.get()));
    off_t size = ::lseek(out.fd.get(), 0, SEEK_END);
    if (size < 0 || ::lseek(out.fd.get(), 0, SEEK_SET) != 0)
        return tar_error(std::string("cannot rewind the tarball: ") + std::strerror(errno));
    out.size = static_cast<uint64_t>(size);
    return out;
}

namespace {

// Runs in `dest` as the working directory, so names stay relative (libarchive's secure checks
// then cover exactly the tar's names), and goes back after.
class ScopedChdir {
public:
    static Result<std::unique_ptr<ScopedChdir>> enter(const std::string& dir) {
        UniqueFd back(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!back) return tar_error(std::string("cannot open the working directory: ") + std::strerror(errno));
        if (::chdir(dir.c_str()) != 0) return tar_error("cannot enter " + dir + ": " + std::strerror(errno));
        return std::unique_ptr<ScopedChdir>(new ScopedChdir(std::move(back)));
    }
    ~ScopedChdir() {
        if (::fchdir(m_back.get()) != 0) print_error(std::string("cannot go back to the working directory: ") +
                                                     std::strerror(errno));
    }

private:
    explicit ScopedChdir(UniqueFd back) : m_back(std::move(back)) {}
    UniqueFd m_back;
};

}  // namespace

namespace {

Result<ReadArchive> open_tar(int fd) {
    ReadArchive in(archive_read_new());
    archive_read_support_format_tar(in.get());
    archive_read_support_format_gnutar(in.get());
    archive_read_support_filter_gzip(in.get());
    if (archive_read_open_fd(in.get(), fd, 64 * 1024) != ARCHIVE_OK)
        return tar_error("kilnd's tarball cannot be read: " + archive_message(in.get()));
    return in;
}

std::string clean_name(const char* raw) {
    std::string name = raw ? raw : "";
    while (name.rfind("./", 0) == 0) name.erase(0, 2);
    while (!name.empty() && name.back() == '/') name.pop_back();
    return name;
}

}  // namespace

Result<std::vector<std::string>> tar_names(int fd) {
    ReadArchive in = TRY(open_tar(fd));
    std::vector<std::string> names;
    for (;;) {
        archive_entry* entry = nullptr;
        int r = archive_read_next_header(in.get(), &entry);
        if (r == ARCHIVE_EOF) return names;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
            return tar_error("kilnd's tarball is damaged: " + archive_message(in.get()));
        std::string name = clean_name(archive_entry_pathname(entry));
        if (!name.empty() && name != ".") names.push_back(name);
    }
}

Result<uint64_t> unpack_into(int fd, const std::string& dest, const std::string& strip) {
    auto in_dest = TRY(ScopedChdir::enter(dest));
    ReadArchive in = TRY(open_tar(fd));
    // No ARCHIVE_EXTRACT_UNLINK: with it libarchive would quietly replace a symlink that an entry
    // writes through; without it, that is an error. No ARCHIVE_EXTRACT_OWNER (or _ACL, _XATTR,
    // _FFLAGS): what is extracted belongs to whoever runs the CLI, with only the tar's rwx bits.
    WriteArchive out(archive_write_disk_new());
    archive_write_disk_set_options(out.get(), ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                                  ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                                  ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
    uint64_t entries = 0;
    for (;;) {
        archive_entry* entry = nullptr;
        int r = archive_read_next_header(in.get(), &entry);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
            return tar_error("kilnd's tarball is damaged: " + archive_message(in.get()));
        std::string name = clean_name(archive_entry_pathname(entry));
        if (!strip.empty() && name == strip) continue;  // the folder itself, which exists
        if (!strip.empty() && name.rfind(strip + "/", 0) == 0) name.erase(0, strip.size() + 1);
        if (name.empty() || name == ".") continue;  // the folder itself, which exists
        if (name.front() == '/') return tar_error("kilnd's tarball has an absolute name: " + name);
        std::string padded = "/" + name + "/";
        if (padded.find("/../") != std::string::npos) return tar_error("kilnd's tarball has a '..' name: " + name);
        if (archive_entry_hardlink(entry)) return tar_error("kilnd's tarball has a hard link: " + name);
        mode_t type = archive_entry_filetype(entry);
        if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
            return tar_error("kilnd's tarball has a device, fifo or socket: " + name);
        std::string target = dest + "/" + name;  // for messages
        archive_entry_set_pathname(entry, name.c_str());
        // The permission bits only: ARCHIVE_EXTRACT_PERM restores setuid, setgid and sticky bits
        // too, and with no ARCHIVE_EXTRACT_OWNER the file is ours, so a root-owned 04755 entry
        // extracted by root would be a setuid-root program the guest chose.
        archive_entry_set_perm(entry, archive_entry_perm(entry) & 0777);
        if (archive_write_header(out.get(), entry) != ARCHIVE_OK)
            return tar_error("cannot extract " + name + ": " + archive_message(out.get()));
        const void* block;
        size_t size;
        la_int64_t offset;
        while ((r = archive_read_data_block(in.get(), &block, &size, &offset)) == ARCHIVE_OK)
            if (archive_write_data_block(out.get(), block, size, offset) != ARCHIVE_OK)
                return tar_error("cannot write " + target + ": " + archive_message(out.get()));
        if (r != ARCHIVE_EOF) return tar_error("kilnd's tarball is damaged: " + archive_message(in.get()));
        if (archive_write_finish_entry(out.get()) != ARCHIVE_OK)
            return tar_error("cannot finish " + target + ": " + archive_message(out.get()));
        ++entries;
    }
    if (archive_write_close(out.get()) != ARCHIVE_OK)
        return tar_error("cannot finish extracting: " + archive_message(out.get()));
    return entries;
}

}  // namespace kiln::cli
