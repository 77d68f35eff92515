// Canary routes (README, "Shadow and canary routes"): a route may send `canary.percent` of its traffic to a second
// mode. Pure functions; the caller supplies the key or the request's sequence number.
//
// With a key, the choice is a hash of (route name, key) into 10,000 buckets, so the same key
// always takes the same path and a share of keys (not of requests) takes the canary. Without a
// key, request n of the route takes the canary when floor((n+1)·p) > floor(n·p): an exact,
// evenly spread share.
#pragma once

#include <cstdint>
#include <string_view>

namespace handoff::proxy {

// `basis_points`: 0-10000 (100 % = 10000).
bool canary_by_key(std::string_view route_name, std::string_view key, int basis_points) noexcept;
bool canary_by_sequence(std::uint64_t n, int basis_points) noexcept;

}  // namespace handoff::proxy
