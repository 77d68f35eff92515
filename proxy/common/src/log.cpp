#include "handoff/common/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <cstdio>

namespace handoff::proxy::log {
namespace {
std::atomic<int> min_level{static_cast<int>(level::info)};

const char* name(level l) noexcept {
    switch (l) {
        case level::debug: return "debug";
        case level::info: return "info";
        case level::warn: return "warn";
        case level::error: return "error";
    }
    return "info";
}

std::string now_rfc3339() {
    using namespace std::chrono;
    const auto now = system_clock::now();
    const auto secs = time_point_cast<seconds>(now);
    const auto micros = duration_cast<microseconds>(now - secs).count();
    const std::time_t t = system_clock::to_time_t(secs);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(micros));
    return buf;
}
}  // namespace

void set_level(level min) noexcept { min_level.store(static_cast<int>(min)); }
bool enabled(level l) noexcept { return static_cast<int>(l) >= min_level.load(std::memory_order_relaxed); }

void write(level l, std::string_view msg, nlohmann::json fields) {
    nlohmann::json line = nlohmann::json::object();
    line["time"] = now_rfc3339();
    line["level"] = name(l);
    line["msg"] = msg;
    if (fields.is_object()) {
        for (auto& [k, v] : fields.items()) line[k] = std::move(v);
    }
    // Invalid UTF-8 from untrusted input must not throw here: replace it.
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text.push_back('\n');
    // One write() per line keeps lines whole when several threads log at once.
    const char* p = text.data();
    std::size_t left = text.size();
    while (left > 0) {
        const ssize_t n = ::write(STDOUT_FILENO, p, left);
        if (n <= 0) break;
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

bool throttle::admit(long key, std::uint64_t& held_back, clock::time_point now) {
    std::lock_guard lock(mu_);
    auto [it, fresh] = entries_.try_emplace(key);
    entry& e = it->second;
    if (!fresh && now - e.last < interval_) {
        ++e.held;
        return false;
    }
    held_back = e.held;
    e.held = 0;
    e.last = now;
    return true;
}

}  // namespace handoff::proxy::log
