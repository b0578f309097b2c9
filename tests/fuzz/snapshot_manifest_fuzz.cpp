// libFuzzer target: a snapshot's kiln-snapshot.json (src/vm/snapshot_manifest.cpp), which a
// snapshot directory on disk (or an import) supplies. Checks: parse never crashes or throws,
// refuses with a code, and what it accepts serializes to text that parses back to the same
// canonical text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_support.h"
#include "vm/snapshot_manifest.h"

using namespace kiln::vm;
using kiln::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > kMaxManifestBytes) return 0;
    std::string text(reinterpret_cast<const char*>(data), size);
    auto parsed = parse_manifest(text);
    if (!parsed.ok()) {
        check(!parsed.error().message.empty());
        return 0;
    }
    std::string canonical = serialize_manifest(*parsed);
    auto again = parse_manifest(canonical);
    check(again.ok());
    check(serialize_manifest(*again) == canonical);
    (void)check_compatible(*parsed, SnapshotHost{"tcg", "7.2.0"});
    return 0;
}
