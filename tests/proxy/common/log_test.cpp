#include <handoff/common/log.hpp>

#include <doctest/doctest.h>

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
