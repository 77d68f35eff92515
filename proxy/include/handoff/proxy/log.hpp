// Structured JSON logging: one line per event on stdout, `{"time":..,"level":..,"msg":..,...}`.
//
// Thread-safe (a line is written with a single write call). Never log secrets or bodies.
#pragma once

#include <nlohmann/json.hpp>

#include <string_view>

namespace handoff::proxy::log {

enum class level { debug = 0, info = 1, warn = 2, error = 3 };

// Lines below `min` are dropped. Default: info.
void set_level(level min) noexcept;
bool enabled(level l) noexcept;

// Writes one JSON line: time (RFC 3339, UTC, microseconds), level, msg, then `fields`.
void write(level l, std::string_view msg, nlohmann::json fields = nlohmann::json::object());

inline void debug(std::string_view msg, nlohmann::json f = nlohmann::json::object()) { if (enabled(level::debug)) write(level::debug, msg, std::move(f)); }
inline void info(std::string_view msg, nlohmann::json f = nlohmann::json::object()) { if (enabled(level::info)) write(level::info, msg, std::move(f)); }
inline void warn(std::string_view msg, nlohmann::json f = nlohmann::json::object()) { if (enabled(level::warn)) write(level::warn, msg, std::move(f)); }
inline void error(std::string_view msg, nlohmann::json f = nlohmann::json::object()) { write(level::error, msg, std::move(f)); }

}  // namespace handoff::proxy::log
