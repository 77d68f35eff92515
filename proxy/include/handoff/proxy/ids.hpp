// Correlation IDs and W3C trace context: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace handoff::proxy {

// 1..128 characters of [A-Za-z0-9._:-] (DESIGN §2).
bool valid_correlation_id(std::string_view id) noexcept;

// A new UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, 74 random bits. Thread-safe.
std::string make_uuid_v7();

// W3C traceparent: "00-<32 lower hex, not all 0>-<16 lower hex, not all 0>-<2 hex>" (version ff
// is invalid; other versions must at least carry that prefix).
bool valid_traceparent(std::string_view tp) noexcept;

// A new traceparent with random trace and parent IDs, sampled flag set.
std::string make_traceparent();

}  // namespace handoff::proxy
