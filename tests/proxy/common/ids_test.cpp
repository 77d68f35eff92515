#include "handoff/common/ids.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

using namespace handoff::proxy;

TEST_CASE("correlation ids are 1 to 128 characters of the allowed set") {
    CHECK(valid_correlation_id("abc-123_X.y:z"));
    CHECK(valid_correlation_id(std::string(128, 'a')));
    CHECK_FALSE(valid_correlation_id(""));
    CHECK_FALSE(valid_correlation_id(std::string(129, 'a')));
    CHECK_FALSE(valid_correlation_id("bad id!"));
    CHECK_FALSE(valid_correlation_id("a\r\nb"));
    CHECK_FALSE(valid_correlation_id("a/b"));
}

TEST_CASE("generated ids are version 7 UUIDs with the RFC variant and are unique") {
    std::set<std::string> seen;
    for (int i = 0; i < 10000; ++i) {
        const auto id = make_uuid_v7();
        REQUIRE(id.size() == 36);
        CHECK(id[8] == '-');
        CHECK(id[14] == '7');
        CHECK((id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b'));
        CHECK(valid_correlation_id(id));
        seen.insert(id);
    }
    CHECK(seen.size() == 10000);
}

namespace {

// The 64 bits of a packed bit vector that start at bit `at` (zero past the end).
std::uint64_t word_at(const std::vector<std::uint64_t>& v, std::size_t at) {
    const std::size_t w = at / 64, b = at % 64;
    std::uint64_t out = w < v.size() ? v[w] >> b : 0;
    if (b != 0 && w + 1 < v.size()) out |= v[w + 1] << (64 - b);
    return out;
}

// Berlekamp-Massey over GF(2): the length of the shortest linear feedback shift register that
// generates `s` (its linear complexity). A random sequence of n bits has about n/2; any output bit
// of a Mersenne Twister has at most 19937, however many bits are read, because its state evolves
// linearly: IDs from such a generator let a client compute the next ones.
std::size_t linear_complexity(const std::vector<bool>& s) {
    const std::size_t n = s.size(), words = n / 64 + 2;
    std::vector<std::uint64_t> rev(words, 0);  // rev bit j = s[n-1-j]
    for (std::size_t j = 0; j < n; ++j) {
        if (s[n - 1 - j]) rev[j / 64] |= std::uint64_t{1} << (j % 64);
    }
    std::vector<std::uint64_t> c(words, 0), b(words, 0), t;
    c[0] = b[0] = 1;
    std::size_t l = 0, m = 0;
    bool first = true;
    for (std::size_t i = 0; i < n; ++i) {
        // d = s[i] + sum_{k=1..l} c_k s[i-k]; with c_0 = 1 that is the parity of c & (s[i], s[i-1], ...),
        // and s[i-k] is rev bit (n-1-i+k).
        std::uint64_t acc = 0;
        for (std::size_t w = 0; w * 64 <= l; ++w) {
            std::uint64_t mask = ~std::uint64_t{0};
            if ((w + 1) * 64 > l + 1) mask = (std::uint64_t{1} << ((l + 1) % 64)) - 1;
            acc ^= c[w] & word_at(rev, n - 1 - i + w * 64) & mask;
        }
        if (std::popcount(acc) % 2 == 0) continue;
        t = c;
        const std::size_t shift = first ? i + 1 : i - m;  // c += x^shift * b
        for (std::size_t w = 0; w < words; ++w) {
            const std::size_t src = w * 64;
            if (src + 64 <= shift) continue;
            std::uint64_t v = 0;
            if (src >= shift) {
                v = word_at(b, src - shift);
            } else {
                v = b[0] << (shift - src);
            }
            c[w] ^= v;
        }
        if (2 * l <= i) {
            l = i + 1 - l;
            m = i;
            b = t;
            first = false;
        }
    }
    return l;
}

}  // namespace

TEST_CASE("the linear-complexity check tells a Mersenne Twister from random bits") {
    // The check itself: it must see through mt19937_64 (what request IDs came from before) and
    // pass bits from a CSPRNG.
    std::mt19937_64 mt(12345);
    std::vector<bool> s;
    for (int i = 0; i < 48000; ++i) {
        (void)mt();
        s.push_back(mt() & 1u);
    }
    CHECK(linear_complexity(s) <= 19937);
    std::vector<bool> alternating;
    for (int i = 0; i < 100; ++i) alternating.push_back(i % 2 == 0);
    CHECK(linear_complexity(alternating) == 2);
}

TEST_CASE("request IDs are unpredictable: their random bits have the linear complexity of random bits") {
    // The last bit of every ID; a generator whose outputs are linear in its state (mt19937_64) gives
    // at most 19937 whatever the length, a CSPRNG about half the length.
    std::vector<bool> s;
    for (int i = 0; i < 48000; ++i) {
        const auto id = make_uuid_v7();
        const char c = id[35];
        const int v = c >= 'a' ? c - 'a' + 10 : c - '0';
        s.push_back(v & 1);
    }
    CHECK(linear_complexity(s) > 21000);
}

TEST_CASE("uuid v7 ids sort by creation time across milliseconds") {
    const auto a = make_uuid_v7();
    std::string b;
    do {
        b = make_uuid_v7();
    } while (b.substr(0, 13) == a.substr(0, 13));
    CHECK(a < b);
}

TEST_CASE("traceparent validation follows W3C trace context") {
    CHECK(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    CHECK_FALSE(valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    CHECK_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
    CHECK_FALSE(valid_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    CHECK_FALSE(valid_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
    CHECK_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));
    CHECK(valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));
    CHECK(valid_traceparent(make_traceparent()));
}
