#include "histogram.hpp"

#include <doctest/doctest.h>

using handoff::bench::histogram;

TEST_CASE("histogram buckets are exact below 256 and within 1/128 of the value above") {
    for (std::uint64_t v = 0; v < 256; ++v) CHECK(histogram::upper_bound_of(histogram::index_of(v)) == v);
    for (std::uint64_t v : {256ull, 257ull, 1000ull, 123456ull, 999'999'999ull, (1ull << 41) + 12345}) {
        auto i = histogram::index_of(v);
        auto ub = histogram::upper_bound_of(i);
        CHECK(ub >= v);
        CHECK(static_cast<double>(ub - v) <= static_cast<double>(v) / 128.0);
        CHECK(histogram::index_of(ub) == i);
        CHECK(histogram::index_of(ub + 1) == i + 1);
    }
}

TEST_CASE("histogram clamps huge values into the last bucket but keeps the exact maximum") {
    histogram h;
    h.record(1ull << 50);
    CHECK(histogram::index_of(1ull << 50) == histogram::bucket_count - 1);
    CHECK(h.max() == (1ull << 50));
    CHECK(h.quantile(1.0) == (1ull << 50));
}

TEST_CASE("histogram quantiles report the bucket upper bound of the ranked value, capped at the maximum") {
    histogram h;
    CHECK(h.quantile(0.5) == 0);
    for (std::uint64_t v = 1; v <= 100; ++v) h.record(v * 1000);  // 1..100 µs in ns
    CHECK(h.count() == 100);
    CHECK(h.min() == 1000);
    auto p50 = h.quantile(0.5);
    CHECK(p50 >= 50'000);
    CHECK(p50 <= 50'000 + 50'000 / 128);
    CHECK(h.quantile(0.99) >= 99'000);
    CHECK(h.quantile(1.0) == 100'000);
    CHECK(h.mean() == doctest::Approx(50'500.0));

    histogram other;
    other.record(7);
    h.merge(other);
    CHECK(h.count() == 101);
    CHECK(h.min() == 7);
    CHECK(h.quantile(0.0) == 7);
}
