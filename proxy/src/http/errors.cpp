#include "handoff/proxy/http/errors.hpp"

#include <nlohmann/json.hpp>

namespace handoff::proxy {

error_info describe(error e) noexcept {
    switch (e) {
        case error::bad_request: return {400, "bad_request", 0, true};
        case error::invalid_correlation_id: return {400, "invalid_correlation_id", 0, false};
        case error::ambiguous_path: return {400, "ambiguous_path", 0, false};
        case error::missing_key: return {400, "missing_key", 0, false};
        case error::invalid_topic: return {400, "invalid_topic", 0, false};
        case error::not_found: return {404, "not_found", 0, false};
        case error::idempotency_key_missing: return {400, "idempotency_key_missing", 0, false};
        case error::idempotency_key_invalid: return {400, "idempotency_key_invalid", 0, false};
        case error::idempotency_in_flight: return {409, "idempotency_in_flight", 1, false};
        case error::idempotency_mismatch: return {422, "idempotency_key_reused", 0, false};
        case error::method_not_allowed: return {405, "method_not_allowed", 0, false};
        case error::request_timeout: return {408, "request_timeout", 0, true};
        case error::body_too_large: return {413, "body_too_large", 0, true};
        case error::uri_too_long: return {414, "uri_too_long", 0, true};
        case error::headers_too_large: return {431, "headers_too_large", 0, true};
        case error::unsupported_version: return {505, "http_version_not_supported", 0, true};
        case error::expectation_failed: return {417, "expectation_failed", 0, true};
        case error::not_implemented: return {501, "not_implemented", 0, true};
        case error::queue_full: return {503, "queue_full", 1, false};
        case error::producer_unavailable: return {503, "producer_unavailable", 2, false};
        case error::delivery_failed: return {503, "delivery_failed", 1, false};
        case error::outcome_unknown: return {504, "outcome_unknown", 0, false};
        case error::upstream_unavailable: return {502, "upstream_unavailable", 0, false};
        case error::upstream_bad_response: return {502, "upstream_bad_response", 0, false};
        case error::upstream_timeout: return {504, "upstream_timeout", 0, false};
        case error::bad_reply: return {502, "bad_reply", 0, false};
        case error::overloaded: return {503, "overloaded", 1, false};
        case error::state_unavailable: return {503, "state_unavailable", 1, false};
        case error::internal: return {500, "internal_error", 0, true};
    }
    return {500, "internal_error", 0, true};
}

error from_produce_error(produce_error e) noexcept {
    switch (e) {
        case produce_error::queue_full: return error::queue_full;
        case produce_error::message_too_large: return error::body_too_large;
        case produce_error::invalid_topic: return error::invalid_topic;
        case produce_error::unknown_topic: return error::delivery_failed;
        case produce_error::not_ready: return error::producer_unavailable;
        case produce_error::ok: break;
    }
    return error::internal;
}

error from_upstream_error(upstream_error e) noexcept {
    switch (e) {
        case upstream_error::refused: return error::upstream_unavailable;
        case upstream_error::timeout: return error::upstream_timeout;
        case upstream_error::bad_response: return error::upstream_bad_response;
        case upstream_error::pool_exhausted: return error::overloaded;
        case upstream_error::ok: break;
    }
    return error::internal;
}

error from_delivery_status(delivery_status s) noexcept {
    switch (s) {
        case delivery_status::not_persisted: return error::delivery_failed;
        case delivery_status::possibly_persisted: return error::outcome_unknown;
        case delivery_status::persisted: break;
    }
    return error::internal;
}

std::string error_body(error e, std::string_view message, std::string_view correlation_id,
                       std::string_view request_id) {
    nlohmann::json j = nlohmann::json::object();
    j["error"] = describe(e).code;
    j["message"] = message;
    if (!correlation_id.empty()) j["correlation_id"] = correlation_id;
    if (!request_id.empty()) j["request_id"] = request_id;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace handoff::proxy
