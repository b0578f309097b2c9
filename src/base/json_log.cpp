// JSON line logs for kilnd (see json_log.h).
#include "base/json_log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace kiln::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::Info)};
std::mutex g_write_mutex;  // one line at a time on stderr

const char* level_name(Level level) {
    switch (level) {
        case Level::Debug: return "debug";
        case Level::Info: return "info";
        case Level::Warn: return "warn";
        case Level::Error: return "error";
    }
    return "info";
}

}  // namespace

void set_level(Level level) { g_level = static_cast<int>(level); }

bool parse_level(std::string_view name, Level* level) {
    for (Level l : {Level::Debug, Level::Info, Level::Warn, Level::Error}) {
        if (name == level_name(l)) {
            *level = l;
            return true;
        }
    }
    return false;
}

std::string rfc3339_ms(int64_t unix_ms) {
    time_t secs = static_cast<time_t>(unix_ms / 1000);
    int ms = static_cast<int>(unix_ms % 1000);
    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    struct tm tm {};
    gmtime_r(&secs, &tm);
    char buf[64];
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return buf;
}

void write(Level level, std::string_view msg, const nlohmann::json& fields) {
    if (static_cast<int>(level) < g_level.load()) return;
    int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    nlohmann::ordered_json line = nlohmann::ordered_json::object();  // ts, level, msg first
    line["ts"] = rfc3339_ms(now_ms);
    line["level"] = level_name(level);
    line["msg"] = std::string(msg);
    if (fields.is_object()) {
        for (auto it = fields.begin(); it != fields.end(); ++it) {
            if (it.key() == "ts" || it.key() == "level" || it.key() == "msg") line["field_" + it.key()] = nlohmann::ordered_json(it.value());
            else line[it.key()] = nlohmann::ordered_json(it.value());
        }
    } else if (!fields.is_null()) {
        line["fields"] = nlohmann::ordered_json(fields);
    }
    // replace: a guest's or client's invalid UTF-8 in a message must not throw.
    std::string text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    std::lock_guard lock(g_write_mutex);
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(STDERR_FILENO, text.data() + off, text.size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
    }
}

}  // namespace kiln::log
