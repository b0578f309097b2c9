// ConsoleScanner: a VM's serial console split into lines, with the kernel panic line spotted.
// Pure (no I/O), on its own so the fuzz target (tests/fuzz/console_scanner_fuzz.cpp) reaches it;
// ConsoleLog (console_log.h) feeds it what the console socket gives.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::vm {

struct PanicReport {
    std::string line;                 // "Kernel panic - not syncing: ..."
    std::vector<std::string> context; // the console lines around it (up to kContextLines before, some after)

    // The panic line, then the context indented, for error messages.
    std::string to_string() const;
};

// Splits console bytes into lines (CR stripped, overlong lines cut) and spots the panic line. Pure.
class ConsoleScanner {
public:
    static constexpr size_t kContextLines = 30;
    static constexpr size_t kMaxLine = 1024;

    // Returns true when this feed completed the first panic line.
    bool feed(std::string_view data);
    const std::optional<std::string>& panic_line() const { return m_panic_line; }
    std::vector<std::string> last_lines() const { return {m_lines.begin(), m_lines.end()}; }
    // Lines completed since the panic line.
    size_t lines_since_panic() const { return m_since_panic; }

private:
    void complete_line();

    std::string m_partial;
    std::deque<std::string> m_lines;  // the last kContextLines complete lines
    std::optional<std::string> m_panic_line;
    size_t m_since_panic = 0;
};

}  // namespace kiln::vm
