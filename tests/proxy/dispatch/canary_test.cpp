#include "handoff/proxy/dispatch/canary.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace handoff::proxy;

TEST_CASE("without a key the canary share is exact and evenly spread") {
    for (int bp : {1, 1000, 1250, 3333, 5000, 9999}) {
        int canary = 0;
        int longest_gap = 0, gap = 0;
        for (std::uint64_t n = 0; n < 10'000; ++n) {
            if (canary_by_sequence(n, bp)) {
                ++canary;
                gap = 0;
            } else {
                longest_gap = std::max(longest_gap, ++gap);
            }
        }
        CHECK(canary == bp);
        CHECK(longest_gap <= 10'000 / bp + 1);
    }
    CHECK_FALSE(canary_by_sequence(5, 0));
    CHECK(canary_by_sequence(5, 10'000));
}

TEST_CASE("with a key the share of 10,000 keys is within 1 % and the same key always goes the same way") {
    for (int bp : {1000, 2500, 5000}) {
        int canary = 0;
        for (int i = 0; i < 10'000; ++i) canary += canary_by_key("orders", "customer-" + std::to_string(i), bp) ? 1 : 0;
        CHECK(std::abs(canary - bp) <= 100);
    }
    for (int i = 0; i < 1000; ++i) {
        const auto key = std::string("k").append(std::to_string(i));
        const bool first = canary_by_key("orders", key, 1000);
        for (int again = 0; again < 3; ++again) CHECK(canary_by_key("orders", key, 1000) == first);
    }
    CHECK_FALSE(canary_by_key("orders", "k", 0));
    CHECK(canary_by_key("orders", "k", 10'000));
}

TEST_CASE("a key's choice depends on the route, so routes do not canary the same customers") {
    int same = 0;
    for (int i = 0; i < 2000; ++i) {
        const auto key = std::to_string(i);
        same += canary_by_key("orders", key, 5000) == canary_by_key("payments", key, 5000) ? 1 : 0;
    }
    CHECK(same > 800);
    CHECK(same < 1200);
}
