// JSON line logs for kilnd: one object per line on stderr with ts, level, msg and fields.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

namespace kiln::log {

enum class Level { Debug, Info, Warn, Error };

// Lines below `level` are dropped (default Info).
void set_level(Level level);
// "debug" | "info" | "warn" | "error"; false if unknown.
bool parse_level(std::string_view name, Level* level);

// Writes {"ts": RFC 3339 UTC ms, "level", "msg", ...fields} as one line. `fields` must be an
// object (anything else is logged under "fields"). Callers never pass a token here.
void write(Level level, std::string_view msg, const nlohmann::json& fields = nlohmann::json::object());
inline void debug(std::string_view msg, const nlohmann::json& f = nlohmann::json::object()) { write(Level::Debug, msg, f); }
inline void info(std::string_view msg, const nlohmann::json& f = nlohmann::json::object()) { write(Level::Info, msg, f); }
inline void warn(std::string_view msg, const nlohmann::json& f = nlohmann::json::object()) { write(Level::Warn, msg, f); }
inline void error(std::string_view msg, const nlohmann::json& f = nlohmann::json::object()) { write(Level::Error, msg, f); }

// "2026-11-28T15:21:06.123Z" for a unix time in milliseconds.
std::string rfc3339_ms(int64_t unix_ms);

}  // namespace kiln::log
