// libFuzzer target: the serial console scanner (src/vm/console_scanner.cpp), fed what a guest
// prints. The first byte picks chunk sizes, so the same bytes arrive split in different places.
// Checks: the lines kept and the panic line do not depend on how the bytes were split, and the
// caps (line length, lines kept) hold.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fuzz_support.h"
#include "vm/console_scanner.h"

using namespace kiln::vm;
using kiln::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    size_t chunk = 1 + data[0] % 61;
    std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);

    ConsoleScanner whole;
    bool whole_panicked = whole.feed(bytes);
    ConsoleScanner split;
    int panics = 0;
    for (size_t pos = 0; pos < bytes.size(); pos += chunk) panics += split.feed(bytes.substr(pos, chunk));

    check(panics <= 1);
    check(whole_panicked == (panics == 1));
    check(whole.panic_line() == split.panic_line());
    check(whole.last_lines() == split.last_lines());
    check(whole.lines_since_panic() == split.lines_since_panic());
    check(whole.last_lines().size() <= ConsoleScanner::kContextLines);
    for (const auto& line : whole.last_lines()) check(line.size() <= ConsoleScanner::kMaxLine);
    if (whole.panic_line()) {
        check(whole.panic_line()->rfind("Kernel panic - not syncing", 0) == 0);
        PanicReport report{*whole.panic_line(), whole.last_lines()};
        check(!report.to_string().empty());
    }
    return 0;
}
