// Reading what git printed on the host (`ls-remote`, `ls-tree`): pure functions, apart from the
// processes that produce their input, so the fuzz targets reach them (tests/fuzz/git_output_fuzz.cpp).
// The repositories are the job's, so the names in this output are hostile.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::ci {

bool is_full_sha(const std::string& text);  // 40 lowercase hex digits

// `git ls-remote -- REPO REF` lines, "<sha>\t<name>": the commit of `ref`, preferring the exact
// name, then the branch, then the tag peeled, then the tag itself. nullopt when none has a full SHA.
std::optional<std::string> ref_sha_in_ls_remote(std::string_view output, const std::string& ref);

// `git ls-tree --full-tree SHA -- PATH`, "<mode> <type> <id>\t<path>": the blob id of exactly
// `path`, or "" when the output names another path, a tree or a submodule, or no full SHA.
std::string blob_id_in_ls_tree(std::string_view output, const std::string& path);

// `git ls-tree -r -l -z` entries, "<mode> <type> <id> <size>\t<path>\0": the sum of the sizes
// (a submodule's "-" counts 0), saturating at UINT64_MAX rather than wrapping past a size cap.
uint64_t total_size_in_ls_tree(std::string_view output);

}  // namespace kiln::ci
