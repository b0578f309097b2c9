// Tarball checking with libarchive: read everything, refuse what could escape the destination,
// and re-write only the checked entries so the guest's tar never sees an unchecked header.
#include "kilnd/http/tar_check.h"

#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <set>
#include <vector>

#include "daemon/sandboxes/sandbox_service.h"

namespace kiln::daemon::http {

namespace {

Error refuse(const std::string& entry, const std::string& why) {
    return make_error(ErrorCode::InvalidArgument, "tar entry '" + entry.substr(0, 200) + "': " + why);
}

// Splits a relative path into components, dropping "." and empty ones; false on "..".
bool components(std::string_view path, std::vector<std::string_view>* out) {
    size_t pos = 0;
    while (pos <= path.size()) {
        size_t end = path.find('/', pos);
        if (end == std::string_view::npos) end = path.size();
        std::string_view part = path.substr(pos, end - pos);
        if (part == "..") return false;
        if (!part.empty() && part != ".") out->push_back(part);
        pos = end + 1;
    }
    return true;
}

// libarchive returns NULL for some errors of damaged archives.
std::string archive_message(archive* a) {
    const char* m = archive_error_string(a);
    return m ? m : "unknown error";
}

// Where the re-written tar grows, and how large it may grow: a damaged entry can declare a huge
// size that libarchive pads out when the writer is freed, so the writer refuses past the cap.
struct Output {
    std::string* tar;
    uint64_t cap;
};

struct ReadDeleter {
    void operator()(archive* a) const { archive_read_free(a); }
};
struct WriteDeleter {
    void operator()(archive* a) const { archive_write_free(a); }
};

}  // namespace

bool symlink_stays_inside(std::string_view entry_path, std::string_view target) {
    if (target.empty() || target[0] == '/') return false;
    std::vector<std::string_view> dir;
    if (!components(entry_path, &dir)) return false;
    if (!dir.empty()) dir.pop_back();  // the link's own name
    size_t pos = 0;
    while (pos <= target.size()) {
        size_t end = target.find('/', pos);
        if (end == std::string_view::npos) end = target.size();
        std::string_view part = target.substr(pos, end - pos);
        if (part == "..") {
            if (dir.empty()) return false;
            dir.pop_back();
        } else if (!part.empty() && part != ".") {
            dir.push_back(part);
        }
        pos = end + 1;
    }
    return true;
}

Result<CheckedTar> check_tar(std::string_view archive_bytes, const TarLimits& limits) {
    std::unique_ptr<archive, ReadDeleter> in(archive_read_new());
    archive_read_support_filter_gzip(in.get());
    archive_read_support_filter_bzip2(in.get());
    archive_read_support_filter_xz(in.get());
    archive_read_support_format_tar(in.get());
    archive_read_support_format_gnutar(in.get());
    if (archive_read_open_memory(in.get(), archive_bytes.data(), archive_bytes.size()) != ARCHIVE_OK)
        return make_error(ErrorCode::InvalidArgument, std::string("not a tar archive: ") + archive_message(in.get()));

    CheckedTar result;
    // Content plus headers (at most a few blocks per entry, long names included) plus the end.
    // Declared before the writer: freeing the writer may still call back into it.
    Output output{&result.tar, limits.max_bytes + limits.max_entries * 4096 + (1u << 20)};
    std::unique_ptr<archive, WriteDeleter> out(archive_write_new());
    archive_write_set_format_gnutar(out.get());
    archive_write_set_bytes_in_last_block(out.get(), 1);
    // The output grows in a string through a write callback (archive_write_open_memory needs a
    // fixed buffer).
    auto writer = [](archive*, void* ctx, const void* buf, size_t n) -> la_ssize_t {
        auto* o = static_cast<Output*>(ctx);
        if (o->tar->size() + n > o->cap) return -1;
        o->tar->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
    };
    if (archive_write_open(out.get(), &output, nullptr, writer, nullptr) != ARCHIVE_OK)
        return make_error(ErrorCode::Internal, "cannot start the checked tar");

    archive_entry* entry = nullptr;
    std::vector<char> buf(64 * 1024);
    // Every symlink the archive makes: a later entry *through* one of them ("a -> ." then
    // "a/l -> ../x", or "d -> /etc" then "d/passwd") would be checked against the wrong folder,
    // so such entries are refused. `tar -c` never writes them.
    std::set<std::string> links;
    for (;;) {
        int r = archive_read_next_header(in.get(), &entry);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
            return make_error(ErrorCode::InvalidArgument, std::string("damaged tar archive: ") + archive_message(in.get()));
        const char* raw_name = archive_entry_pathname(entry);
        std::string name = raw_name ? raw_name : "";
        if (name.empty()) return refuse(name, "has no name");
        if (name[0] == '/') return refuse(name, "absolute names are not allowed");
        std::vector<std::string_view> parts;
        if (!components(name, &parts)) return refuse(name, "'..' is not allowed in names");
        if (archive_entry_hardlink(entry)) return refuse(name, "hard links are not allowed");
        std::string prefix;
        for (size_t i = 0; i + 1 < parts.size(); ++i) {
            prefix += (i ? "/" : "") + std::string(parts[i]);
            if (links.count(prefix)) return refuse(name, "is inside '" + prefix + "', a symlink of this archive");
        }
        if (++result.entries > limits.max_entries) return refuse(name, "too many entries");

        mode_t type = archive_entry_filetype(entry);
        if (type == AE_IFLNK) {
            const char* target = archive_entry_symlink(entry);
            std::string t = target ? target : "";
            if (!t.empty() && t[0] == '/') return refuse(name, "absolute symlinks are not allowed (-> " + t.substr(0, 200) + ")");
            if (!symlink_stays_inside(name, t)) return refuse(name, "the symlink leaves the destination (-> " + t.substr(0, 200) + ")");
            std::string normalized;
            for (size_t i = 0; i < parts.size(); ++i) normalized += (i ? "/" : "") + std::string(parts[i]);
            links.insert(normalized);
        } else if (type != AE_IFREG && type != AE_IFDIR) {
            return refuse(name, "only files, folders and relative symlinks are allowed");
        }
        if (type == AE_IFREG && (!archive_entry_size_is_set(entry) || archive_entry_size(entry) < 0 ||
                                 uint64_t(archive_entry_size(entry)) > limits.max_bytes - result.bytes))
            return refuse(name, "has a damaged or too large size");
        if (parts.empty()) continue;  // "./" itself: the destination exists already

        archive_entry_set_uid(entry, 0);
        archive_entry_set_gid(entry, 0);
        archive_entry_set_uname(entry, "root");
        archive_entry_set_gname(entry, "root");
        archive_entry_set_perm(entry, archive_entry_perm(entry) & 07777);
        if (archive_write_header(out.get(), entry) != ARCHIVE_OK)
            return refuse(name, std::string("cannot be re-written: ") + archive_message(out.get()));
        if (type != AE_IFREG) continue;
        for (;;) {
            la_ssize_t n = archive_read_data(in.get(), buf.data(), buf.size());
            if (n < 0) return refuse(name, std::string("damaged data: ") + archive_message(in.get()));
            if (n == 0) break;
            result.bytes += static_cast<uint64_t>(n);
            if (result.bytes > limits.max_bytes) return refuse(name, "the archive is larger than allowed");
            if (archive_write_data(out.get(), buf.data(), static_cast<size_t>(n)) != n)
                return refuse(name, std::string("cannot be re-written: ") + archive_message(out.get()));
        }
    }
    if (archive_write_close(out.get()) != ARCHIVE_OK) return make_error(ErrorCode::Internal, "cannot finish the checked tar");
    return result;
}

}  // namespace kiln::daemon::http
