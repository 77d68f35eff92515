// The receiving half's pure logic (README, "Receiving half"): which outcome an HTTP attempt has, how long to
// wait before the next one, how the HTTP request for a record looks, what a dead-letter or reply
// record contains, and which offset may be stored. No I/O; tested without an io_context.
#pragma once

#include "handoff/config/config.hpp"
#include "handoff/ports/consumer.hpp"
#include "handoff/ports/producer.hpp"
#include "handoff/ports/upstream.hpp"

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace handoff::proxy {

// ---- the retry table ----------------------------------------------------------------------------
enum class verdict {
    done,         // 2xx: resolved
    retry,        // timeout, reset mid-response, 408, 429, 5xx: retry with backoff (counts an attempt)
    connection,   // connection refused / reset before any response byte, pool exhausted: the
                  // service looks down; retried without counting an attempt (circuit breaker)
    dead_letter,  // every other status (1xx, 3xx, other 4xx): dead-letter at once
};

const char* to_string(verdict v) noexcept;

verdict classify(upstream_error error, int status) noexcept;

// Delay before retry number `retry` (1 = first retry): min(cap, base * 2^(retry-1)); with full
// jitter a uniform pick in [0, that], `unit_random` in [0, 1).
std::chrono::milliseconds backoff(const config::retry_policy& policy, int retry, double unit_random) noexcept;

// Retry-After (RFC 9110 §10.2.3): delta-seconds or an HTTP-date (IMF-fixdate), relative to `now`.
// nullopt when absent or malformed; a date in the past is 0.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::chrono::system_clock::time_point now);

// The delay actually used: Retry-After (capped at policy.backoff_cap) when given, else backoff.
std::chrono::milliseconds retry_delay(const config::retry_policy& policy, int retry, double unit_random,
                                      std::optional<std::chrono::milliseconds> retry_after) noexcept;

// ---- the delivery request ---------------------------------------------------------------------
// Header values are emitted only when safe_header_value (handoff/common/http_rules.hpp) allows them.

// Names never emitted from record headers: framing and hop-by-hop (Host, Content-Length,
// Transfer-Encoding, Connection, Upgrade, TE, Trailer, Keep-Alive, Proxy-Connection, Expect).
bool is_framing_header(std::string_view name) noexcept;

// An origin-form path the service may receive: starts with one '/', RFC 3986 pchar and '/' only
// (no space, control, '\', '?', '#'), no "." or ".." segment. Anything else could name another
// resource or, read as an authority or absolute URI, another host.
bool safe_origin_path(std::string_view path) noexcept;

// A query (without '?') of pchar, '/' and '?' only.
bool safe_query(std::string_view query) noexcept;

struct delivery_request {
    std::optional<boost::beast::http::request<boost::beast::http::string_body>> request;
    std::string problem;              // why there is no request (dead-letter reason)
    std::size_t dropped_headers = 0;  // record headers refused (unsafe value or forbidden name)
};

// The HTTP request for `record`: CloudEvents HTTP binary mode (ce-* from ce_* headers),
// Content-Type, X-Correlation-ID (= the record's handoff_correlation_id when valid, else its
// ce_id when valid; the request ID is ce-id), traceparent/tracestate/baggage, the
// subscription's allow-listed headers, the value as the body byte for byte. Host is
// `upstream.host:port`, never anything from the record.
delivery_request build_delivery_request(const config::subscription& sub, const config::upstream_config& upstream,
                                        const consumed_record& record);

// ---- records produced by the subscription -------------------------------------------------------
const std::string* find_header(const consumed_record& r, std::string_view name) noexcept;

// The dead-letter record: same key, value and headers (earlier handoff_dlq_* removed) plus
// handoff_dlq_topic/_partition/_offset/_attempts/_status/_error.
kafka_record make_dead_letter(const consumed_record& r, const std::string& dlq_topic, int attempts, int last_status,
                              const std::string& error);

// Where the service's response to `r` is published: the topic the request named in
// `handoff_reply_topic` (a `reply` route's caller) when reply_topic_problem finds nothing wrong
// with it; else the subscription's reply_topic; empty for no reply.
std::string reply_topic_for(const config::subscription& sub, const consumed_record& r);

// Why a record's `handoff_reply_topic` may not be used (not a legal name, a subscribed topic, or
// not among the subscription's reply_topics / its reply_topic); nullopt when it may, or when the
// record names none. Such a record is dead-lettered, not delivered: a producer to the input topic
// must not aim the service's response at another service's topic.
std::optional<std::string> reply_topic_problem(const config::subscription& sub, const consumed_record& r);

// '*' in `pattern` matches any run of characters (empty included).
bool topic_matches(std::string_view pattern, std::string_view topic) noexcept;

// The reply record (to reply_topic_for): key = the request ID (the record's ce_id), value = the
// response body, headers ce_specversion, ce_id (= `reply_id`), ce_source, ce_type, ce_time,
// handoff_request_id (what the caller matches), handoff_correlation_id (the caller's label, or the
// request ID when the record has none), handoff_reply_status, content-type, traceparent and
// handoff_reply_header_<lower-case name> for each of `sub.reply_headers` present.
kafka_record make_reply(const config::subscription& sub, const consumed_record& r,
                        const boost::beast::http::response<boost::beast::http::string_body>& response,
                        const std::string& reply_id, std::chrono::system_clock::time_point now);

// ---- offsets ----------------------------------------------------------------------------------
// Per partition: which offset may be stored. Records are added as they arrive and resolved in
// any order; the storable offset is the lowest unresolved one (or one past the highest seen when
// everything is resolved), so an offset is never stored past unfinished work. Gaps in offsets
// (compaction, transaction markers) are fine.
class offset_tracker {
public:
    void add(std::int64_t offset);
    // Marks `offset` resolved; returns the next offset to store when it moved forward.
    std::optional<std::int64_t> resolve(std::int64_t offset);
    std::size_t open() const noexcept { return open_.size(); }
    std::int64_t stored() const noexcept { return stored_; }

private:
    std::set<std::int64_t> open_;
    std::int64_t high_ = -1;
    std::int64_t stored_ = -1;
};

}  // namespace handoff::proxy
