// Request IDs, correlation IDs and W3C trace context.
#pragma once

#include <string>
#include <string_view>

namespace handoff::proxy {

// A request's two IDs (README, "Request IDs"). `request` is Handoff's own, new for every request and
// unpredictable: it keys everything the request leaves behind (the status URL, its Idempotency-Key
// entry, its reply waiter) and is the record's CloudEvents `id`. `correlation` is the caller's
// `X-Correlation-ID` (the request ID when the caller sent none): a label that is echoed, logged,
// forwarded and carried in the record's `handoff_correlation_id` header, and keys nothing, so two
// requests that share it never meet.
struct request_ids {
    std::string request;
    std::string correlation;
};

// 1..128 characters of [A-Za-z0-9._:-] (README, "Request IDs").
bool valid_correlation_id(std::string_view id) noexcept;

// A new UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, and 74 random bits from the
// kernel's CSPRNG (getrandom), so that IDs a client has seen tell nothing about the next ones.
// Thread-safe.
// Throws std::runtime_error when the CSPRNG fails (it does not hand out weak bytes).
std::string make_uuid_v7();

// W3C traceparent: "00-<32 lower hex, not all 0>-<16 lower hex, not all 0>-<2 hex>" (version ff
// is invalid; other versions must at least carry that prefix).
bool valid_traceparent(std::string_view tp) noexcept;

// A new traceparent with random trace and parent IDs, sampled flag set. Trace IDs key nothing:
// they come from a fast per-thread generator, not from the CSPRNG.
std::string make_traceparent();

}  // namespace handoff::proxy
