// libFuzzer target: check_tar() on arbitrary bytes (plain or compressed tarballs from any API
// client) refuses or accepts without crashing, and everything it passes on to the guest's tar is
// safe: relative names without "..", only files, folders and symlinks that stay inside.
#include <archive.h>
#include <archive_entry.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "kilnd/http/tar_check.h"

using namespace kiln::daemon::http;
using kiln::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 1 << 20) return 0;
    TarLimits limits;
    limits.max_entries = 1000;
    limits.max_bytes = 8 << 20;  // bounds decompression bombs, as the real limits do
    auto checked = check_tar(std::string_view(reinterpret_cast<const char*>(data), size), limits);
    if (!checked.ok()) {
        check(checked.error().code == kiln::ErrorCode::InvalidArgument || checked.error().code == kiln::ErrorCode::Internal);
        return 0;
    }
    check(checked->entries <= limits.max_entries);
    check(checked->bytes <= limits.max_bytes);

    // Read back what would reach the guest.
    archive* a = archive_read_new();
    archive_read_support_format_tar(a);
    archive_read_support_format_gnutar(a);
    archive_read_support_format_empty(a);
    check(archive_read_open_memory(a, checked->tar.data(), checked->tar.size()) == ARCHIVE_OK);
    archive_entry* entry = nullptr;
    std::set<std::string> links;
    int r;
    uint64_t count = 0;
    while ((r = archive_read_next_header(a, &entry)) == ARCHIVE_OK) {
        ++count;
        std::string name = archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "";
        check(!name.empty() && name[0] != '/');
        check(archive_entry_hardlink(entry) == nullptr);
        std::string normalized;
        size_t pos = 0;
        while (pos <= name.size()) {
            size_t end = name.find('/', pos);
            if (end == std::string::npos) end = name.size();
            std::string part = name.substr(pos, end - pos);
            check(part != "..");
            if (!part.empty() && part != ".") {
                check(!links.count(normalized));  // nothing is reached through an archive symlink
                normalized += (normalized.empty() ? "" : "/") + part;
            }
            pos = end + 1;
        }
        mode_t type = archive_entry_filetype(entry);
        check(type == AE_IFREG || type == AE_IFDIR || type == AE_IFLNK);
        if (type == AE_IFLNK) {
            const char* target = archive_entry_symlink(entry);
            check(target && symlink_stays_inside(name, target));
            links.insert(normalized);
        }
    }
    check(r == ARCHIVE_EOF);
    check(count <= checked->entries);
    archive_read_free(a);
    return 0;
}
