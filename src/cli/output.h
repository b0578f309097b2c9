// Text output of the API commands: JSON printing, tables, relative times, KEY=VALUE arguments, a waiting line.
#pragma once

#include <atomic>
#include <chrono>
#include <ctime>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace kiln::cli {

// Writes all of `data` to fd (retrying short writes and EINTR); false once the reader has gone
// away (EPIPE: SIGPIPE is ignored).
bool write_all(int fd, std::string_view data);

// Writes all of text to fd 1; false when stdout is gone.
bool print_out(std::string_view text);

// The API's JSON as kilnd sent it (pretty-printed, one trailing newline).
void print_json(const nlohmann::json& value);

// Left-aligned columns separated by two spaces; the first row is the header.
std::string format_table(const std::vector<std::vector<std::string>>& rows);

// "2026-11-28T15:21:06.123Z" (or without the fraction) -> unix seconds; false when it is not that.
bool parse_rfc3339(const std::string& text, time_t& out);

// "5s ago" / "in 9m" from an RFC 3339 timestamp (the raw string when it does not parse).
std::string relative_time(const std::string& rfc3339);

// A JSON field as text: strings as they are, numbers and bools printed, absent or null as "-".
std::string field(const nlohmann::json& object, const char* key);

// Parses repeated NAME=VALUE arguments; `what` names the flag in the error.
Result<std::map<std::string, std::string>> parse_pairs(const std::vector<std::string>& pairs, const std::string& what);

// While a long call runs: "kiln: <text>... 3s" on stderr, redrawn each second when stderr is a
// terminal; one plain line when it is not and `verbose` is set; nothing otherwise. Erased (on a
// terminal) by done().
class WaitingLine {
public:
    WaitingLine(std::string text, bool verbose);
    ~WaitingLine();
    void done();

private:
    void loop();

    std::string m_text;
    bool m_tty;
    std::chrono::steady_clock::time_point m_start;
    std::atomic<bool> m_stop{false};
    std::thread m_thread;
};

}  // namespace kiln::cli
