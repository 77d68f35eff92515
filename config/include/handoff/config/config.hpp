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

struct listen_config {
    std::string address = "0.0.0.0";
    std::uint16_t port = 8080;
    int threads = 1;                        // io_context threads
    std::size_t max_connections = 10000;    // accepted connections beyond this are closed at once
    std::size_t max_header_bytes = 16 * 1024;  // request line + headers; above -> 431
    std::size_t max_body_bytes = 1024 * 1024;  // default body limit; above -> 413
    std::size_t max_pipelined = 64;         // pipelined requests buffered per connection
    millis header_timeout{10'000};          // whole request head must arrive within this
    millis body_timeout{30'000};            // whole body must arrive within this
    millis idle_timeout{60'000};            // keep-alive idle between requests
    millis write_timeout{30'000};           // writing one response
};

struct admin_config {
    bool enabled = true;
    std::string address = "127.0.0.1";      // never the pod IP unless configured
    std::uint16_t port = 9901;
};

struct upstream_config {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8081;
    std::size_t max_connections = 64;       // pool bound; callers beyond wait up to connect_timeout
    std::size_t max_idle = 16;              // idle keep-alive connections kept
    millis connect_timeout{2'000};
    millis timeout{30'000};                 // default per-request upstream timeout
    std::size_t max_response_bytes = 16 * 1024 * 1024;
};

struct kafka_config {
    // Comma-separated bootstrap list, or empty when `embedded` is true ("brokers: embedded").
    std::string brokers;
    bool embedded = false;
    int embedded_brokers = 1;               // mock cluster size for `embedded`
    // librdkafka properties passed through verbatim after ${ENV} expansion (TLS, SASL, tuning).
    std::map<std::string, std::string> properties;
    // Names of `properties` whose values are secrets (redacted in /config and logs). Filled by
    // the loader from well-known names (sasl.password, ssl.key.password, ...).
    std::vector<std::string> secret_properties;
    millis flush_timeout{10'000};           // on shutdown
};

enum class key_kind { none, path, header, body, correlation };

struct key_source {
    key_kind kind = key_kind::none;
    std::string name;                        // path parameter, header name, or JSON pointer
};

struct route {
    std::string name;
    std::vector<std::string> methods;        // upper-case; empty means any method
    std::string path;                        // "/orders/{id}"; exact segments and {param}
    config::mode mode = mode::forward;
    std::string topic;                       // may contain {param} placeholders
    key_source key;                          // absent: no key (Kafka partitioner spreads records)
    std::string ce_type;                     // default "<METHOD> <path template>"-derived
    std::string ce_source;                   // default defaults.ce_source
    millis timeout{0};                       // 0 -> defaults.timeout
    int success_status = 0;                  // commit: 200/201/204 (default 200); event: 202
    std::size_t max_body_bytes = 0;          // 0 -> listen.max_body_bytes
    std::vector<std::string> headers;        // allow-list copied into events (case-insensitive)
    int line = 0;                            // where the route was defined
};

struct defaults_config {
    config::mode mode = mode::forward;       // for requests no route matches
    millis timeout{5'000};
    std::string ce_source = "/handoff";
};

struct log_config {
    std::string level = "info";              // debug | info | warn | error
};

struct config {
    std::string file;                        // the file it was loaded from
    listen_config listen;
    admin_config admin;
    upstream_config upstream;
    kafka_config kafka;
    defaults_config defaults;
    log_config log;
    std::vector<route> routes;
};

}  // namespace handoff::config
