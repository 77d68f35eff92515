#include <handoff/common/log.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <regex>
#include <string>
#include <thread>

using handoff::proxy::log::throttle;
using namespace std::chrono_literals;

TEST_CASE("throttle: the first line of a key is written, repeats within the interval are counted") {
    throttle t(10s);
    const auto t0 = throttle::clock::time_point{} + 1h;
    std::uint64_t held = 99;
    CHECK(t.admit(7, held, t0));
    CHECK(held == 0);
    CHECK_FALSE(t.admit(7, held, t0 + 50ms));
    CHECK_FALSE(t.admit(7, held, t0 + 9999ms));
    // Another key has its own window.
    CHECK(t.admit(8, held, t0 + 1s));
    CHECK(held == 0);
    // The window is measured from the last written line; the next one reports what was held back.
    CHECK(t.admit(7, held, t0 + 10s));
    CHECK(held == 2);
    CHECK_FALSE(t.admit(7, held, t0 + 19s));
    CHECK(t.admit(7, held, t0 + 20s));
    CHECK(held == 1);
    CHECK(t.admit(7, held, t0 + 31s));
    CHECK(held == 0);
}

TEST_CASE("log::line: time, level and msg first, then the fields in order, as one JSON line") {
    using handoff::proxy::log::level;
    handoff::proxy::log::line l(level::info, "request");
    l.str("request_id", "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
        .str("route", "orders")
        .num("status", 202)
        .num("offset", -1)
        .millis("duration_ms", 1234567)
        .millis("tiny_ms", 7);
    const std::string text(l.end());
    REQUIRE(text.size() > 2);
    CHECK(text.back() == '\n');
    CHECK(text.find('\n') == text.size() - 1);
    const auto j = nlohmann::ordered_json::parse(text);
    std::vector<std::string> keys;
    for (const auto& [k, v] : j.items()) keys.push_back(k);
    CHECK(keys == std::vector<std::string>{"time", "level", "msg", "request_id", "route", "status", "offset",
                                           "duration_ms", "tiny_ms"});
    CHECK(std::regex_match(j["time"].get<std::string>(), std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)")));
    CHECK(j["level"] == "info");
    CHECK(j["msg"] == "request");
    CHECK(j["status"] == 202);
    CHECK(j["offset"] == -1);
    CHECK(j["duration_ms"].get<double>() == doctest::Approx(1234.567));
    CHECK(text.find("\"tiny_ms\":0.007") != std::string::npos);
}

TEST_CASE("log::line: hostile string values stay one valid JSON line; invalid UTF-8 is replaced") {
    using handoff::proxy::log::level;
    const std::string hostile = std::string("a\"b\\c\nd\re\x01f\x7f") + "\xff\xfe" + "\xc3\xa9";
    handoff::proxy::log::line l(level::warn, "msg \"quoted\"\n");
    l.str("value", hostile).str("empty", "");
    const std::string text(l.end());
    CHECK(text.find('\n') == text.size() - 1);
    const auto j = nlohmann::json::parse(text);
    CHECK(j["msg"] == "msg \"quoted\"\n");
    CHECK(j["empty"] == "");
    const auto v = j["value"].get<std::string>();
    CHECK(v.rfind("a\"b\\c\nd\re\x01f\x7f", 0) == 0);
    CHECK(v.find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD for the invalid bytes
    CHECK(v.substr(v.size() - 2) == "\xc3\xa9");         // valid UTF-8 kept
}

namespace {

// Points stdout at a pipe for the life of the object; read() returns what was written so far.
class captured_stdout {
public:
    captured_stdout() {
        REQUIRE(::pipe(fds_) == 0);
        REQUIRE(::fcntl(fds_[0], F_SETFL, O_NONBLOCK) == 0);
        std::fflush(stdout);
        saved_ = ::dup(STDOUT_FILENO);
        ::dup2(fds_[1], STDOUT_FILENO);
    }
    ~captured_stdout() {
        ::dup2(saved_, STDOUT_FILENO);
        ::close(saved_);
        ::close(fds_[0]);
        ::close(fds_[1]);
    }
    std::string read() {
        std::string out;
        char buf[4096];
        for (ssize_t n; (n = ::read(fds_[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
        return out;
    }

private:
    int fds_[2] = {-1, -1};
    int saved_ = -1;
};

}  // namespace

TEST_CASE("request lines are batched; an immediate line and flush write them first, in order") {
    namespace log = handoff::proxy::log;
    captured_stdout out;
    log::flush();
    out.read();
    log::line(log::level::info, "request").str("n", "first").write();
    log::line(log::level::info, "request").str("n", "second").write();
    log::warn("immediate", {{"n", "third"}});
    const auto text = out.read();
    const auto first = text.find("\"first\""), second = text.find("\"second\""), third = text.find("\"third\"");
    REQUIRE(first != std::string::npos);
    REQUIRE(second != std::string::npos);
    REQUIRE(third != std::string::npos);
    CHECK(first < second);
    CHECK(second < third);

    log::line(log::level::info, "request").str("n", "fourth").write();
    log::flush();
    CHECK(out.read().find("\"fourth\"") != std::string::npos);
}

TEST_CASE("batched request lines reach stdout without a flush") {
    namespace log = handoff::proxy::log;
    captured_stdout out;
    log::flush();
    out.read();
    log::line(log::level::info, "request").str("n", "by-the-writer").write();
    std::string seen;
    // The writer thread empties the batch within its delay; poll (bounded) for it.
    for (int i = 0; i < 2000 && seen.find("by-the-writer") == std::string::npos; ++i) {
        seen += out.read();
        if (seen.find("by-the-writer") == std::string::npos) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    CHECK(seen.find("by-the-writer") != std::string::npos);
}
