// ConsoleScanner: lines and the panic line (see console_scanner.h).
#include "vm/console_scanner.h"

namespace kiln::vm {
namespace {

constexpr const char* kPanicMarker = "Kernel panic - not syncing";

}  // namespace

std::string PanicReport::to_string() const {
    std::string out = line;
    if (!context.empty()) {
        out += "\nlast console lines:";
        for (const auto& l : context) out += "\n  " + l;
    }
    return out;
}

void ConsoleScanner::complete_line() {
    std::string line = std::move(m_partial);
    m_partial.clear();
    if (m_panic_line) ++m_since_panic;
    if (!m_panic_line) {
        size_t pos = line.find(kPanicMarker);
        if (pos != std::string::npos) m_panic_line = line.substr(pos);
    }
    m_lines.push_back(std::move(line));
    if (m_lines.size() > kContextLines) m_lines.pop_front();
}

bool ConsoleScanner::feed(std::string_view data) {
    bool had_panic = m_panic_line.has_value();
    for (char c : data) {
        if (c == '\n') {
            complete_line();
        } else if (c != '\r' && m_partial.size() < kMaxLine) {
            m_partial.push_back(c);
        }
    }
    return !had_panic && m_panic_line.has_value();
}

}  // namespace kiln::vm
