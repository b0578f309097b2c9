// Text output helpers for the API commands.
#include "cli/output.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "cli/cli_context.h"

namespace kiln::cli {

using nlohmann::json;

bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

bool print_out(std::string_view text) { return write_all(1, text); }

void print_json(const json& value) {
    // kilnd's JSON is valid UTF-8; replace anything else rather than throw.
    print_out(value.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
}

std::string format_table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> widths;
    for (const auto& row : rows) {
        if (widths.size() < row.size()) widths.resize(row.size(), 0);
        for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
    }
    std::string out;
    for (const auto& row : rows) {
        std::string line;
        for (size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
        }
        out += line + "\n";
    }
    return out;
}

namespace {

std::string duration_text(int64_t seconds) {
    if (seconds < 60) return std::to_string(seconds) + "s";
    if (seconds < 3600) return std::to_string(seconds / 60) + "m";
    if (seconds < 86400 * 2) return std::to_string(seconds / 3600) + "h";
    return std::to_string(seconds / 86400) + "d";
}

}  // namespace

bool parse_rfc3339(const std::string& text, time_t& out) {
    struct tm tm = {};
    const char* end = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end) return false;
    if (*end == '.')
        while (*++end >= '0' && *end <= '9') {
        }
    if (*end != 'Z' || end[1] != '\0') return false;
    out = ::timegm(&tm);
    return true;
}

std::string relative_time(const std::string& rfc3339) {
    time_t t;
    if (!parse_rfc3339(rfc3339, t)) return rfc3339.empty() ? "-" : rfc3339;
    int64_t delta = static_cast<int64_t>(t) - static_cast<int64_t>(::time(nullptr));
    if (delta > 0) return "in " + duration_text(delta);
    return duration_text(-delta) + " ago";
}

std::string field(const json& object, const char* key) {
    if (!object.is_object() || !object.contains(key)) return "-";
    const json& v = object[key];
    if (v.is_null()) return "-";
    if (v.is_string()) return v.get<std::string>();
    return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::map<std::string, std::string>> parse_pairs(const std::vector<std::string>& pairs, const std::string& what) {
    std::map<std::string, std::string> out;
    for (const auto& kv : pairs) {
        size_t eq = kv.find('=');
        if (eq == std::string::npos || eq == 0)
            return make_error(ErrorCode::CliUsage, what + " takes NAME=VALUE, not '" + kv + "'");
        out[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    return out;
}

WaitingLine::WaitingLine(std::string text, bool verbose)
    : m_text(std::move(text)), m_tty(::isatty(2)), m_start(std::chrono::steady_clock::now()) {
    if (m_tty) m_thread = std::thread([this] { loop(); });
    else if (verbose) print_error(m_text + "...");
}

WaitingLine::~WaitingLine() { done(); }

void WaitingLine::done() {
    if (m_stop.exchange(true)) return;
    if (m_thread.joinable()) m_thread.join();
    if (m_tty) {
        ssize_t ignored = ::write(2, "\r\033[K", 4);  // erase the line
        (void)ignored;
    }
}

void WaitingLine::loop() {
    // Sleeps in small steps so done() does not wait for the next redraw.
    for (int tick = 0; !m_stop; ++tick) {
        if (tick % 10 == 0) {
            auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - m_start);
            std::string line = "\r\033[Kkiln: " + m_text + "... " + std::to_string(secs.count()) + "s";
            ssize_t ignored = ::write(2, line.data(), line.size());
            (void)ignored;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

}  // namespace kiln::cli
