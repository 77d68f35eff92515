// Structured JSON logging: one line per event on stdout, `{"time":..,"level":..,"msg":..,...}`.
//
// Thread-safe: lines are never interleaved. `write` (and debug/info/warn/error) writes its line at
// once; request lines (`line`) are batched: a writer thread writes them within 5 ms, in one
// write call per batch, so the request log costs no system call per request. Order is kept: an
// immediate line first writes what is batched. Never log secrets or bodies.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace handoff::proxy::log {

enum class level { debug = 0, info = 1, warn = 2, error = 3 };

// Lines below `min` are dropped. Default: info.
void set_level(level min) noexcept;
bool enabled(level l) noexcept;

// Writes one JSON line: time (RFC 3339, UTC, microseconds), level, msg, then `fields`.
void write(level l, std::string_view msg, nlohmann::json fields = nlohmann::json::object());

inline void debug(std::string_view msg, nlohmann::json f = nlohmann::json::object()) {
    if (enabled(level::debug)) write(level::debug, msg, std::move(f));
}
inline void info(std::string_view msg, nlohmann::json f = nlohmann::json::object()) {
    if (enabled(level::info)) write(level::info, msg, std::move(f));
}
inline void warn(std::string_view msg, nlohmann::json f = nlohmann::json::object()) {
    if (enabled(level::warn)) write(level::warn, msg, std::move(f));
}
inline void error(std::string_view msg, nlohmann::json f = nlohmann::json::object()) {
    write(level::error, msg, std::move(f));
}

// Writes the batched request lines now (shutdown, tests).
void flush();

// A line built in place, for what is logged once per request: no JSON document, and no allocation
// once the thread's buffer has grown. `time`, `level` and `msg` come first, then the fields in the
// order they are added. Keys must be literals of ours (written as they are); string values are
// escaped, and invalid UTF-8 in them is replaced by U+FFFD as in `write`. One per thread at a time.
class line {
public:
    line(level l, std::string_view msg);
    line(const line&) = delete;
    line& operator=(const line&) = delete;

    line& str(std::string_view key, std::string_view value);
    line& num(std::string_view key, std::int64_t value);
    // A duration in microseconds, written in milliseconds with three decimals ("12.345").
    line& millis(std::string_view key, std::int64_t micros);
    // Ends the line ("}\n") and returns it, valid until the thread's next line (for tests).
    std::string_view end();
    // Ends the line and adds it to the batch (written within 5 ms, at 64 KiB, by flush or at exit).
    void write();

private:
    std::string& out_;
};

// Holds back repeats of one kind of line, for errors a library reports in a loop (librdkafka says
// "all brokers down" every ~50 ms while Kafka is away). The first line for a key is written; later
// ones within `interval` of the last written one are only counted, and the next one written after
// that says how many were held back. Thread-safe.
class throttle {
public:
    using clock = std::chrono::steady_clock;
    explicit throttle(clock::duration interval) noexcept : interval_(interval) {}

    // True when the line for `key` should be written now; `held_back` is then the number of lines
    // for that key not written since the last one that was.
    bool admit(long key, std::uint64_t& held_back, clock::time_point now = clock::now());

private:
    struct entry {
        clock::time_point last;
        std::uint64_t held = 0;
    };
    std::mutex mu_;
    clock::duration interval_;
    std::unordered_map<long, entry> entries_;  // one per key (an error code): a handful
};

}  // namespace handoff::proxy::log
