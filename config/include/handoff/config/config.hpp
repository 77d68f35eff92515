// Handoff configuration as plain data.
//
// Contract: a `config` is produced only by `load_file`/`load_string` (load.hpp), which validate
// everything and report every error with its file, line and YAML path. Once loaded a config is
// immutable and shared read-only (std::shared_ptr<const config>). Nothing here depends on YAML.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace handoff::config {

using millis = std::chrono::milliseconds;

enum class mode { forward, event, commit, shadow, reply };

// Returns the YAML spelling ("forward", "event", ...).
const char* to_string(mode m) noexcept;

// `profile:` at the top of the file. `production` refuses Kafka settings that leave the connection
// unencrypted or unverified (insecure_kafka_settings below) unless kafka.allow_insecure is true;
// `development` (the default, so existing files keep working) accepts them.
enum class profile_kind { development, production };

// "development" / "production".
const char* to_string(profile_kind p) noexcept;

// HTTP/2 in cleartext (h2c) on the main listener, beside HTTP/1.1: prior knowledge (the client
// starts with the HTTP/2 preface) and the HTTP/1.1 Upgrade: h2c.
struct http2_config {
    bool enabled = true;
    std::uint32_t max_concurrent_streams = 100;        // SETTINGS_MAX_CONCURRENT_STREAMS
    std::uint32_t initial_window_bytes = 1024 * 1024;  // each stream's receive window, and the connection's
};

struct listen_config {
    std::string address = "0.0.0.0";
    std::uint16_t port = 8080;
    int threads = 1;                           // io_context threads
    std::size_t max_connections = 10000;       // accepted connections beyond this are closed at once
    std::size_t max_header_bytes = 16 * 1024;  // request line + headers; above -> 431
    std::size_t max_body_bytes = 1024 * 1024;  // default body limit; above -> 413
    millis header_timeout{10'000};             // whole request head must arrive within this
    millis body_timeout{30'000};               // whole body must arrive within this
    millis idle_timeout{60'000};               // keep-alive idle between requests
    millis write_timeout{30'000};              // writing one response
    http2_config http2;
};

struct admin_config {
    bool enabled = true;
    std::string address = "127.0.0.1";  // never the pod IP unless configured
    std::uint16_t port = 9901;
};

// What `forward` sends upstream as X-Forwarded-For: the caller's list with the peer address
// appended (what proxies usually do), or only the peer address (the caller's list is dropped, for
// services that trust X-Forwarded-For while callers are other pods that could write anything).
enum class forwarded_for { append, replace };

struct upstream_config {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8081;
    std::size_t max_connections = 64;  // pool bound; callers beyond wait up to connect_timeout
    std::size_t max_idle = 64;         // idle keep-alive connections kept; unset: max_connections
    // An idle pooled connection is closed after this long, before the service's own keep-alive
    // timeout can close it under a request (Node.js, Apache and uvicorn close after 5 s).
    millis idle_timeout{4'000};
    millis connect_timeout{2'000};
    millis timeout{30'000};  // default per-request upstream timeout
    std::size_t max_response_bytes = 16 * 1024 * 1024;
    enum forwarded_for forwarded_for = forwarded_for::append;
};

struct kafka_config {
    // Comma-separated bootstrap list, or empty when `embedded` is true ("brokers: embedded").
    std::string brokers;
    bool embedded = false;
    int embedded_brokers = 1;  // mock cluster size for `embedded`
    // librdkafka properties passed through verbatim after ${ENV} expansion (TLS, SASL, tuning).
    std::map<std::string, std::string> properties;
    // Names of `properties` whose values are secrets (redacted in /config and logs). Filled by
    // the loader from well-known names (sasl.password, ssl.key.password, ...).
    std::vector<std::string> secret_properties;
    millis flush_timeout{10'000};  // on shutdown
    // No progress while the cluster answers (records pending and nothing persisted, or no
    // idempotent producer ID) for this long: the producer handle is re-created as after a fatal
    // error (adapters/kafka/README.md, "Stalls"). 0 turns the check off.
    millis stall_timeout{60'000};
    // Accept insecure settings (see insecure_kafka_settings) in the production profile; the
    // process then logs a warning naming them at start.
    bool allow_insecure = false;
};

enum class key_kind { none, path, header, body, correlation };

struct key_source {
    key_kind kind = key_kind::none;
    std::string name;  // path parameter, header name, or JSON pointer
};

struct route {
    std::string name;
    std::vector<std::string> methods;  // upper-case; empty means any method
    std::string path;                  // "/orders/{id}"; exact segments and {param}
    config::mode mode = mode::forward;
    std::string topic;                 // may contain {param} placeholders
    key_source key;                    // absent: no key (Kafka partitioner spreads records)
    std::string ce_type;               // default "<METHOD> <path template>"-derived
    std::string ce_source;             // default defaults.ce_source
    millis timeout{0};                 // 0 -> defaults.timeout
    int success_status = 0;            // commit: 200/201/204 (default 200); event: 202
    std::size_t max_body_bytes = 0;    // 0 -> listen.max_body_bytes
    std::vector<std::string> headers;  // allow-list copied into events (case-insensitive)
    // Idempotency-Key on event/commit/reply routes: honoured when sent; `required` -> 400 without.
    bool idempotency_required = false;
    // Canary: `canary_percent_bp` basis points (0-10000) of the traffic take `canary_mode` instead
    // of `mode`, chosen by a hash of the route's key when it has one (the same key always takes
    // the same path), else by an even spread over requests. 0 = no canary.
    config::mode canary_mode = mode::forward;
    int canary_percent_bp = 0;
    int line = 0;  // where the route was defined
};

// True for the modes that publish a record (event, commit, shadow, reply).
bool produces(mode m) noexcept;

struct defaults_config {
    config::mode mode = mode::forward;  // for requests no route matches
    millis timeout{5'000};
    std::string ce_source = "/handoff";
};

// How request paths meet route paths (the proxy's route_table; README "Route matching").
enum class trailing_slash {
    match,   // "/orders/" is served by the route on "/orders" (and "/orders/{id}/" by "/orders/{id}")
    strict,  // "/orders/" is another path: it matches only a route written with the slash
};

const char* to_string(trailing_slash t) noexcept;

struct routing_config {
    config::trailing_slash trailing_slash = trailing_slash::match;
};

struct log_config {
    std::string level = "info";  // debug | info | warn | error
    bool requests = true;        // one JSON line per request (at info)
};

// Shutdown on SIGTERM/SIGINT (README, "Running it": drain): readiness goes false at once; requests keep being
// served for `delay` (Kubernetes removes the endpoint with a lag); then the listener stops and
// in-flight requests get up to `timeout` to finish before the producer is flushed.
struct drain_config {
    millis delay{0};
    millis timeout{20'000};
};

// Back-pressure bounds; each hit is a 503 + Retry-After and a metric.
struct limits_config {
    std::size_t max_inflight_commits = 10'000;  // commit requests waiting for a delivery report
    // Request bodies being read or handled, all connections together (each is counted at its
    // declared length, a chunked one at its route's limit): beyond it 503 overloaded.
    std::size_t max_buffered_body_bytes = 64 * 1024 * 1024;
};

// GET /_handoff/requests/{id}: in memory, LRU-bounded (entries and bytes), with a TTL.
struct status_config {
    std::size_t max_entries = 100'000;
    std::size_t max_bytes = 64 * 1024 * 1024;  // stored replies count here (bodies, headers)
    millis ttl{600'000};
    // GET /_handoff/requests/{id} shows a reply's headers and body only when true: whoever holds
    // a status URL would otherwise read the service's answer to someone else's request.
    bool reply_bodies = false;
};

// Idempotency-Key (README, "Idempotency-Key"): completed responses remembered per route and key, in memory.
struct idempotency_config {
    std::size_t max_entries = 100'000;
    std::size_t max_bytes = 64 * 1024 * 1024;  // stored responses (bodies, headers)
    millis ttl{86'400'000};                    // 24 h
};

// Replicas sharing Idempotency-Key claims and request statuses through a compacted Kafka topic
// (README, "Running several replicas"). Off by default: one process keeps both in memory, which is
// right for one replica and for the embedded demo.
struct state_config {
    bool shared = false;
    std::string topic;                // required when shared: e.g. handoff.state.<service>
    int partitions = 6;               // when this process creates the topic
    int replication_factor = -1;      // -1: the broker's default.replication.factor
    millis retention{172'800'000};    // 48 h; at least idempotency.ttl and status.ttl
    millis claim_timeout{30'000};     // a claim in flight this long without completion: abandoned
    millis claim_wait{5'000};         // a request waits this long for its claim written and read back
    millis refresh_interval{10'000};  // how often the partition count is re-read
    std::string replica;              // this process's name in the records; empty: host name + random
};

// How the reply topic is created when it does not exist (Admin API CreateTopics, at start).
struct reply_topic_creation {
    bool enabled = true;  // false: a missing topic keeps /readyz at 503
    int partitions = 1;
    int replication_factor = -1;  // -1: the broker's default.replication.factor
    millis retention{3'600'000};  // retention.ms (and segment.ms) of the new topic
};

// The reply topic this process consumes for `reply` routes: every partition assigned by hand (no
// consumer group), from the end offsets read before /readyz turns true, positions kept in memory;
// partitions added later are read from their beginning. Every reply for a request it holds
// completes it.
struct replies_config {
    std::string topic;  // empty: no reply routes allowed
    reply_topic_creation create;
    millis refresh_interval{10'000};  // how often the partition count is re-read
};

// The receiving half (README, "Receiving half"): consume topics in a group and deliver each record to the local
// service (the `upstream` section's host and port) as an HTTP request.
enum class ordering { key, partition, none };
enum class jitter { full, none };
enum class offset_reset { earliest, latest, error };

// "earliest" / "latest" / "error": the YAML spelling, which is also librdkafka's auto.offset.reset.
const char* to_string(offset_reset r) noexcept;

struct retry_policy {
    int attempts = 10;         // HTTP attempts before dead-lettering (>= 1)
    millis backoff_base{200};  // delay before retry n: base * 2^(n-1), capped
    millis backoff_cap{30'000};
    config::jitter jitter = jitter::full;  // full: uniform in [0, delay]
};

struct subscription_target {
    std::string method;         // empty = "original" (handoff_method header, else POST)
    std::string path;           // empty = "original" (handoff_path + handoff_query)
    std::string fallback_path;  // used when the original path is missing or unsafe
};

struct subscription {
    std::string name;
    std::vector<std::string> topics;
    std::string group;
    subscription_target target;
    config::ordering ordering = ordering::key;
    std::size_t concurrency = 16;  // deliveries in flight at once
    millis timeout{10'000};        // one HTTP attempt
    retry_policy retry;
    std::string dead_letter_topic;  // empty: exhausted/poison records are retried forever
    std::string reply_topic;        // empty: responses are not published
    // The topics a record's handoff_reply_topic header may name (a `reply` route's caller): exact
    // names, or patterns with '*' for any run of topic characters (e.g. "quotes.replies.*").
    // Empty: none. A record naming another topic is dead-lettered, not delivered.
    std::vector<std::string> reply_topics;
    std::vector<std::string> reply_headers;  // response headers copied into replies
    offset_reset auto_offset_reset = offset_reset::earliest;
    std::vector<std::string> headers;               // record headers passed on as HTTP headers
    std::map<std::string, std::string> properties;  // librdkafka consumer properties (override kafka.properties)
    int line = 0;
};

struct config {
    std::string file;  // the file it was loaded from
    profile_kind profile = profile_kind::development;
    listen_config listen;
    admin_config admin;
    upstream_config upstream;
    kafka_config kafka;
    defaults_config defaults;
    routing_config routing;
    log_config log;
    drain_config drain;
    limits_config limits;
    status_config status;
    idempotency_config idempotency;
    state_config state;
    replies_config replies;
    std::vector<route> routes;
    std::vector<subscription> subscriptions;
};

// One Kafka client setting that sends data unencrypted or trusts a broker without verifying it.
struct insecure_kafka_setting {
    std::string path;     // YAML path: "kafka.brokers", "kafka.properties.security.protocol",
                          // "subscriptions[1].properties.ssl.endpoint.identification.algorithm"
    std::string message;  // what the setting does, for errors and the start-up warning
};

// Every insecure setting of the producer (kafka.brokers, kafka.properties) and of the subscriptions'
// consumers (what their `properties` set on top of kafka.properties), whatever the profile:
//   * security.protocol other than SSL / SASL_SSL (case-insensitive) — missing means PLAINTEXT;
//   * ssl.endpoint.identification.algorithm other than https (librdkafka's default) — no
//     hostname check;
//   * enable.ssl.certificate.verification other than true — no certificate check;
//   * kafka.brokers: embedded — the in-process mock cluster, not a real (or durable) Kafka.
// Pure: the loader uses it for the production profile, main for the start-up warning.
std::vector<insecure_kafka_setting> insecure_kafka_settings(const config& c);

}  // namespace handoff::config
