// libFuzzer target: reading git's output on the host (src/ci/jobs/git_output.cpp), which names
// the refs and paths of a job's repository. Input: a ref or path, '\n', then git's output.
// Checks: only full SHAs come out, only for the name asked, and the size total never wraps.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "ci/jobs/git_output.h"
#include "ci/jobs/git_source.h"

using namespace kiln::ci;

namespace {

void check(bool condition) {
    if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string input(reinterpret_cast<const char*>(data), size);
    size_t nl = input.find('\n');
    std::string name = input.substr(0, nl);
    std::string output = nl == std::string::npos ? std::string() : input.substr(nl + 1);

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
