// Building the Kafka record for an `event`/`commit`/`shadow` request: pure (README, "The Kafka record").
//
// The record is the CloudEvents Kafka protocol binding in binary content mode: value = body byte
// for byte; headers ce_specversion, ce_id (the request ID), ce_source, ce_type, ce_time,
// content-type; W3C traceparent (created when absent or invalid), tracestate and baggage;
// handoff_correlation_id (the caller's label), handoff_method, handoff_path, handoff_query; allow-listed request
// headers under their lower-case names. Authorization, Cookie and Proxy-Authorization are copied only when the route
// names them.
#pragma once

#include "handoff/config/config.hpp"
#include "handoff/proxy/http/errors.hpp"
#include "handoff/common/ids.hpp"
#include "handoff/ports/producer.hpp"
#include "handoff/proxy/dispatch/route_table.hpp"

#include <boost/beast/http/fields.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace handoff::proxy {

struct request_view {
    std::string_view method;
    std::string_view path;   // raw, percent-encoded, without '?'
    std::string_view query;  // raw, without '?'; empty when absent
    const boost::beast::http::fields& headers;
};

struct record_result {
    std::optional<kafka_record> record;
    error err = error::internal;  // meaningful only when !record
    std::string message;
};

struct key_result {
    std::optional<std::string> key;  // nullopt: the route has no key (or it could not be read)
    error err = error::internal;     // meaningful only when `message` is not empty
    std::string message;             // why the route's key source is absent
};

// The record key the route takes from the request (README, "The Kafka record"), without building the record.
key_result extract_key(const config::route& route, const request_view& request, std::string_view body,
                       const path_params& params, const std::string& correlation_id);

// `body` is moved into the record on success (no copy).
record_result build_record(const config::route& route, const config::defaults_config& defaults,
                           const request_view& request, std::string& body, const path_params& params,
                           const request_ids& ids, std::chrono::system_clock::time_point now);

// Substitutes {param} placeholders; empty optional when the result is not a legal topic name
// (config::valid_topic_name).
std::optional<std::string> render_topic(std::string_view topic_template, const path_params& params);

// RFC 3339 UTC with millisecond precision: 2026-11-27T10:00:00.123Z
std::string rfc3339_millis(std::chrono::system_clock::time_point t);

}  // namespace handoff::proxy
