// Local tarballs for `kiln sandbox cp` of folders: pack a host folder, unpack kilnd's tar safely.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kiln::cli {

struct PackedTar {
    UniqueFd fd;  // an unlinked temp file, at offset 0
    uint64_t size = 0;
    uint64_t entries = 0;
};

// Packs `folder` (not following symlinks) into an uncompressed tar whose entry names start with
// `prefix` ("" or "name/"). Sockets are skipped; devices and fifos are refused.
Result<PackedTar> pack_folder(const std::string& folder, const std::string& prefix);

// The entry names of the tar read from `fd` (a leading "./" and a trailing '/' removed), for
// deciding how to unpack it. Leaves fd at its end.
Result<std::vector<std::string>> tar_names(int fd);

// Extracts the tar read from `fd` under the existing folder `dest`, dropping `strip` (a first
// name component such as "src") from every name that has it, and the entry named `strip` itself. The tar comes from a guest,
// so it is hostile: absolute names, `..` components, links through symlinks, hard links,
// devices and fifos are refused; owners are not restored, and of the modes only the rwx bits
// (never setuid, setgid or sticky). Returns the number of entries.
Result<uint64_t> unpack_into(int fd, const std::string& dest, const std::string& strip = "");

}  // namespace kiln::cli
