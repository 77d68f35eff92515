// Every error the proxy answers with, and the one place that maps it to HTTP (STYLE 9).
#pragma once

#include "handoff/ports/producer.hpp"
#include "handoff/ports/upstream.hpp"

#include <string>
#include <string_view>

namespace handoff::proxy {

enum class error {
    bad_request,              // malformed or ambiguous HTTP -> 400, connection closed
    invalid_correlation_id,   // 400
    ambiguous_path,           // 400: a spelling of a converted route's path the legacy service may route alike
    missing_key,              // 400: the route's key source is absent from the request
    invalid_topic,            // 400: a path parameter makes an illegal topic name
    not_found,                // 404
    idempotency_key_missing,  // 400: the route requires Idempotency-Key
    idempotency_key_invalid,  // 400: not 1-255 visible ASCII characters (optionally an sf-string)
    idempotency_in_flight,    // 409 + Retry-After: the first request with this key is not finished
    idempotency_mismatch,     // 422: the key was used with a different request (method, target, body)
    method_not_allowed,       // 405 with Allow
    request_timeout,          // 408, connection closed
    body_too_large,           // 413, connection closed
    uri_too_long,             // 414
    headers_too_large,        // 431, connection closed
    unsupported_version,      // 505
    expectation_failed,       // 417
    not_implemented,          // 501
    queue_full,               // 503 + Retry-After: producer queue at its bound, nothing produced
    producer_unavailable,     // 503 + Retry-After: producer fatal or not ready, nothing produced
    delivery_failed,          // 503 + Retry-After: the broker definitely did not persist it
    outcome_unknown,          // 504: no delivery report in time, or possibly persisted
    upstream_unavailable,     // 502
    upstream_bad_response,    // 502
    upstream_timeout,         // 504
    bad_reply,                // 502: the reply record is not a usable HTTP response
    overloaded,               // 503 + Retry-After
    state_unavailable,        // 503 + Retry-After: an Idempotency-Key claim was not written and read back in time
    internal,                 // 500
};

struct error_info {
    unsigned status;
    std::string_view code;         // stable, documented, machine-readable
    unsigned retry_after_seconds;  // 0: no Retry-After header
    bool close_connection;         // the request stream can no longer be trusted
};

error_info describe(error e) noexcept;

// Maps the outcomes of the outbound ports.
error from_produce_error(produce_error e) noexcept;
error from_upstream_error(upstream_error e) noexcept;
// Only for non-persisted reports: not_persisted -> delivery_failed; possibly -> outcome_unknown.
error from_delivery_status(delivery_status s) noexcept;

// {"error": code, "message": message, "correlation_id": label, "request_id": id} (each ID omitted
// when empty).
std::string error_body(error e, std::string_view message, std::string_view correlation_id,
                       std::string_view request_id = {});

}  // namespace handoff::proxy
