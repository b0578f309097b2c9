// libFuzzer target: reading git's output on the host (src/ci/jobs/git_output.cpp), which names
// the refs and paths of a job's repository. Input: a ref or path, '\n', then git's output.
// Checks: only full SHAs come out, only for the name asked, and the size total never wraps.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "fuzz_support.h"
#include "ci/jobs/git_output.h"

using namespace kiln::ci;
using kiln::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto [name, output] = kiln::fuzz::split_once(kiln::fuzz::as_string(data, size), "\n");

    if (auto sha = ref_sha_in_ls_remote(output, name)) {
        check(is_full_sha(*sha));
        check(output.find(*sha + "\t") != std::string::npos);
    }
    std::string id = blob_id_in_ls_tree(output, name);
    check(id.empty() || (is_full_sha(id) && output.find(" " + id + "\t" + name) != std::string::npos));

    uint64_t total = total_size_in_ls_tree(output);
    // Appending an entry never makes the total smaller: it saturates instead of wrapping.
    uint64_t more = total_size_in_ls_tree(output + std::string(1, '\0') + "100644 blob x 18446744073709551615\tbig");
    check(more >= total);
    check(more == std::numeric_limits<uint64_t>::max());
    return 0;
}
