#include "handoff/common/log.hpp"

#include "handoff/common/http_rules.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <cstdio>
#include <mutex>
#include <thread>

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

// "2026-12-06T01:23:45" for the second `secs`, formatted once a second per thread.
std::string_view second_prefix(std::int64_t secs) {
    thread_local std::int64_t cached = -1;
    thread_local char buf[96];  // room for any int the compiler imagines; 19 bytes are used
    if (secs != cached) {
        const std::time_t t = static_cast<std::time_t>(secs);
        std::tm tm{};
        gmtime_r(&t, &tm);
        std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                      tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached = secs;
    }
    return {buf, 19};
}

// Appends `v` (0 <= v < 10^digits) with leading zeros.
void append_padded(std::string& out, std::int64_t v, int digits) {
    char buf[20];
    for (int i = digits - 1; i >= 0; --i) {
        buf[i] = static_cast<char>('0' + v % 10);
        v /= 10;
    }
    out.append(buf, static_cast<std::size_t>(digits));
}

void append_int(std::string& out, std::int64_t v) {
    char buf[24];
    char* end = buf + sizeof buf;
    char* p = end;
    const bool negative = v < 0;
    auto u = negative ? 0 - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
    do {
        *--p = static_cast<char>('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (negative) *--p = '-';
    out.append(p, static_cast<std::size_t>(end - p));
}

// Request lines (log::line) are one per request, and a write() each would be a system call per
// request: they are appended to a buffer that a writer thread empties `batch_delay` after the
// first line of a batch, or the caller at `batch_bytes`. Every other line is written at once,
// after what is buffered, so the output keeps the order in which lines were made. The buffer is
// also written at exit (atexit) and by log::flush. A crash loses at most one batch delay of lines.
class batched_output {
public:
    static constexpr auto batch_delay = std::chrono::milliseconds(5);
    static constexpr std::size_t batch_bytes = 64 * 1024;

    static batched_output& get() {
        // Never destroyed: lines may be written while static objects are destroyed at exit.
        static batched_output* out = [] {
            auto* o = new batched_output;
            std::atexit([] { get().flush(); });
            return o;
        }();
        return *out;
    }

    void append(std::string_view text) {
        bool wake = false, full = false;
        {
            std::lock_guard lk(mu_);
            wake = pending_.empty();
            pending_.append(text);
            full = pending_.size() >= batch_bytes;
            if (wake && !writer_started_) {
                writer_started_ = true;
                std::thread([this] { run(); }).detach();
            }
        }
        if (full) {
            flush();
        } else if (wake) {
            ready_.notify_one();
        }
    }

    // Writes what is buffered, then `text`, as one ordered sequence.
    void write_now(std::string_view text) {
        std::lock_guard wl(write_mu_);
        take_and_write();
        write_all(text);
    }

    void flush() {
        std::lock_guard wl(write_mu_);
        take_and_write();
    }

private:
    batched_output() { pending_.reserve(batch_bytes); }

    // Holds write_mu_.
    void take_and_write() {
        {
            std::lock_guard lk(mu_);
            if (pending_.empty()) return;
            writing_.swap(pending_);
        }
        write_all(writing_);
        writing_.clear();
    }

    void run() {
        for (;;) {
            {
                std::unique_lock lk(mu_);
                ready_.wait(lk, [this] { return !pending_.empty(); });
            }
            std::this_thread::sleep_for(batch_delay);  // let the batch fill
            flush();
        }
    }

    static void write_all(std::string_view text) {
        const char* p = text.data();
        std::size_t left = text.size();
        while (left > 0) {
            const ssize_t n = ::write(STDOUT_FILENO, p, left);
            if (n <= 0) break;
            p += n;
            left -= static_cast<std::size_t>(n);
        }
    }

    std::mutex mu_;        // pending_, writer_started_
    std::mutex write_mu_;  // writing_, and the order of writes to stdout
    std::condition_variable ready_;
    std::string pending_;
    std::string writing_;
    bool writer_started_ = false;
};

std::string& line_buffer() {
    thread_local std::string buf = [] {
        std::string s;
        s.reserve(1024);
        return s;
    }();
    return buf;
}

// Appends the current time, RFC 3339 UTC with microseconds ("2026-12-06T01:23:45.123456Z").
void append_now(std::string& out) {
    using namespace std::chrono;
    const auto now = duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
    out += second_prefix(now / 1'000'000);
    out += '.';
    append_padded(out, now % 1'000'000, 6);
    out += 'Z';
}

std::string now_rfc3339() {
    std::string out;
    append_now(out);
    return out;
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
    batched_output::get().write_now(text);
}

void flush() { batched_output::get().flush(); }

line::line(level l, std::string_view msg) : out_(line_buffer()) {
    out_.clear();
    out_ += "{\"time\":\"";
    append_now(out_);
    out_ += "\",\"level\":\"";
    out_ += name(l);
    out_ += "\",\"msg\":";
    append_json_string(out_, msg);
}

line& line::str(std::string_view key, std::string_view value) {
    out_ += ",\"";
    out_ += key;
    out_ += "\":";
    if (!append_json_ascii(out_, value)) {
        // Rare: let the JSON library validate the UTF-8 (and replace what is invalid).
        out_ += nlohmann::json(std::string(value)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    return *this;
}

line& line::num(std::string_view key, std::int64_t value) {
    out_ += ",\"";
    out_ += key;
    out_ += "\":";
    append_int(out_, value);
    return *this;
}

line& line::millis(std::string_view key, std::int64_t micros) {
    out_ += ",\"";
    out_ += key;
    out_ += "\":";
    if (micros < 0) {
        out_ += '-';
        micros = -micros;
    }
    append_int(out_, micros / 1000);
    out_ += '.';
    append_padded(out_, micros % 1000, 3);
    return *this;
}

std::string_view line::end() {
    out_ += "}\n";
    return out_;
}

void line::write() {
    end();
    batched_output::get().append(out_);
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
