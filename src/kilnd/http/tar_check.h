// The safety check of uploaded tarballs: the whole archive is read and checked before anything
// reaches a guest, and what reaches it is a re-written plain tar of only the checked entries.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace kiln::daemon::http {

struct CheckedTar {
    std::string tar;      // plain (uncompressed) GNU tar of the accepted entries, for `tar -x` in the guest
    uint64_t entries = 0;
    uint64_t bytes = 0;   // file content bytes
};

struct TarLimits {
    uint64_t max_entries = 100000;
    uint64_t max_bytes = 1ull << 30;  // total content after decompression
};

// Accepts a plain, gzip, bzip2 or xz tarball. Refused (invalid_argument, naming the entry):
// absolute names, ".." components, absolute symlinks, symlinks whose target leaves the
// destination, hard links, devices, fifos and sockets; anything over the limits; a damaged archive.
Result<CheckedTar> check_tar(std::string_view archive, const TarLimits& limits = {});

// Whether a symlink at `entry_path` (relative, already checked) pointing at `target` stays inside
// the extraction folder. Exposed for tests.
bool symlink_stays_inside(std::string_view entry_path, std::string_view target);

}  // namespace kiln::daemon::http
