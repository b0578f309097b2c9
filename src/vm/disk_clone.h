// Clones a disk image cheaply: a FICLONE reflink where the file system can, else a sparse copy.
#pragma once

#include <string>

#include "base/result.h"

namespace kiln::vm {

enum class CloneMethod { Reflink, SparseCopy };

const char* clone_method_name(CloneMethod method);  // "reflink" / "sparse copy"

// Creates `dst` (which must not exist) with the content of `src`. On failure `dst` is removed.
Result<CloneMethod> clone_file(const std::string& src, const std::string& dst);

// Whether files in `dir` can be reflinked (probes with two small temporary files).
Result<bool> can_reflink(const std::string& dir);

// Creates `dst` as a reflink of `src`; false (and no dst) where reflinks do not work.
bool try_reflink(const std::string& src, const std::string& dst);

// Replaces the content of the existing file `dst` with a reflink of `src`, keeping dst's inode, so a
// QEMU that has `dst` open sees the new content.
Status reclone_file(const std::string& src, const std::string& dst);

}  // namespace kiln::vm
