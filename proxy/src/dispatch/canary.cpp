#include "handoff/proxy/dispatch/canary.hpp"

namespace handoff::proxy {

namespace {

// FNV-1a, then the splitmix64 finaliser so that the low digits are well mixed.
std::uint64_t hash(std::string_view a, std::string_view b) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    const auto add = [&h](unsigned char c) {
        h ^= c;
        h *= 0x100000001b3ULL;
    };
    for (char c : a) add(static_cast<unsigned char>(c));
    add(0);
    for (char c : b) add(static_cast<unsigned char>(c));
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

}  // namespace

bool canary_by_key(std::string_view route_name, std::string_view key, int basis_points) noexcept {
    if (basis_points <= 0) return false;
    if (basis_points >= 10'000) return true;
    return hash(route_name, key) % 10'000 < static_cast<std::uint64_t>(basis_points);
}

bool canary_by_sequence(std::uint64_t n, int basis_points) noexcept {
    if (basis_points <= 0) return false;
    if (basis_points >= 10'000) return true;
    const auto bp = static_cast<std::uint64_t>(basis_points);
    n %= 10'000;  // the pattern repeats every 10,000 requests; keeps the products small
    return (n + 1) * bp / 10'000 > n * bp / 10'000;
}

}  // namespace handoff::proxy
