#include "handoff/proxy/http/errors.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace handoff::proxy;

TEST_CASE("only a persisted delivery can succeed: other statuses map to 503 or 504") {
    CHECK(describe(from_delivery_status(delivery_status::not_persisted)).status == 503);
    CHECK(describe(from_delivery_status(delivery_status::not_persisted)).retry_after_seconds > 0);
    CHECK(describe(from_delivery_status(delivery_status::possibly_persisted)).status == 504);
    CHECK(describe(from_delivery_status(delivery_status::possibly_persisted)).code == "outcome_unknown");
}

TEST_CASE("refused produces map to definite, retryable answers") {
    CHECK(describe(from_produce_error(produce_error::queue_full)).status == 503);
    CHECK(describe(from_produce_error(produce_error::queue_full)).retry_after_seconds > 0);
    CHECK(describe(from_produce_error(produce_error::not_ready)).status == 503);
    CHECK(describe(from_produce_error(produce_error::message_too_large)).status == 413);
    CHECK(describe(from_produce_error(produce_error::invalid_topic)).status == 400);
}

TEST_CASE("upstream failures map to 502 and 504") {
    CHECK(describe(from_upstream_error(upstream_error::refused)).status == 502);
    CHECK(describe(from_upstream_error(upstream_error::timeout)).status == 504);
    CHECK(describe(from_upstream_error(upstream_error::bad_response)).status == 502);
    CHECK(describe(from_upstream_error(upstream_error::pool_exhausted)).status == 503);
}

TEST_CASE("malformed HTTP closes the connection") {
    CHECK(describe(error::bad_request).close_connection);
    CHECK(describe(error::headers_too_large).status == 431);
    CHECK(describe(error::body_too_large).status == 413);
    CHECK_FALSE(describe(error::missing_key).close_connection);
    // The request is well-formed, only its path is refused: the connection can go on.
    CHECK(describe(error::ambiguous_path).status == 400);
    CHECK(describe(error::ambiguous_path).code == "ambiguous_path");
    CHECK_FALSE(describe(error::ambiguous_path).close_connection);
}

TEST_CASE("error bodies are JSON with a stable code, a message and the correlation id") {
    const auto j = nlohmann::json::parse(error_body(error::missing_key, "no key", "abc"));
    CHECK(j["error"] == "missing_key");
    CHECK(j["message"] == "no key");
    CHECK(j["correlation_id"] == "abc");
    const auto k = nlohmann::json::parse(error_body(error::bad_request, "bad \xff bytes", ""));
    CHECK_FALSE(k.contains("correlation_id"));
}
