// The outbound port to Kafka, as the core sees it. Implemented by adapters/kafka.
//
// Threading: `produce` may be called from any io_context thread concurrently. Delivery
// handlers are invoked exactly once per accepted record, on an io_context thread of the
// adapter's choosing (the one that services the producer's wake-up fd), never inline from
// `produce` and never from a librdkafka-internal thread. Handlers must not block or throw;
// they typically `post` the result to the waiting session's executor.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace handoff::proxy {

struct record_header {
    std::string name;
    std::string value;
};

struct kafka_record {
    std::string topic;
    std::optional<std::string> key;
    std::string value;       // the request body, byte for byte
    bool tombstone = false;  // a null value (compaction deletes the key), not an empty one; `value` unused
    std::vector<record_header> headers;
    std::string correlation_id;  // the caller's label, for logs of undelivered records; not sent
};

// librdkafka's message status, mapped: the only status that may ever justify a 2xx is
// `persisted`.
enum class delivery_status { persisted, not_persisted, possibly_persisted };

struct delivery_report {
    delivery_status status = delivery_status::not_persisted;
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    std::string error;  // empty on success; librdkafka error name otherwise
};

// Why a record was refused before it was queued. Nothing was produced in any of these cases.
enum class produce_error {
    ok = 0,
    queue_full,         // producer queue (messages or bytes) at its bound -> 503 Retry-After
    message_too_large,  // larger than message.max.bytes -> 413
    invalid_topic,      // not a legal topic name -> 400
    unknown_topic,      // topic known not to exist -> 503 (definite)
    not_ready,          // producer fatal / being re-created / shutting down -> 503
};

const char* to_string(produce_error e) noexcept;

using delivery_handler = std::function<void(const delivery_report&)>;

struct producer_stats {
    std::uint64_t queued_messages = 0;  // in librdkafka's queues, not yet reported
    std::uint64_t queued_bytes = 0;
    std::uint64_t in_flight_handlers = 0;     // accepted records whose handler has not run
    bool fatal = false;                       // a fatal error or a stall happened; being re-created
    std::uint64_t recreated_after_fatal = 0;  // handles re-created after a fatal error, since start
    std::uint64_t recreated_after_stall = 0;  // ... after no progress while the cluster answered
};

class producer {
public:
    virtual ~producer() = default;

    // Queues `record`. On `ok` the record's contents have been moved from (the producer owns
    // them until the delivery report, so the body is not copied) and `on_delivery` will run
    // exactly once. On any error nothing was queued, `record` is unchanged and `on_delivery`
    // never runs.
    virtual produce_error produce(kafka_record& record, delivery_handler on_delivery) = 0;

    virtual producer_stats stats() const = 0;

    // True once cluster metadata was fetched, the idempotent producer has its producer ID, and the
    // producer is not being re-created.
    virtual bool ready() const = 0;

    // Why ready() is false, for /readyz; empty when ready.
    virtual std::string not_ready_reason() const {
        return ready() ? std::string() : std::string("kafka is not reachable (no cluster metadata)");
    }

    // Blocks up to `timeout` until every queued record was reported; returns the correlation IDs
    // of records still undelivered when it gave up. Called once at shutdown, after listeners stop.
    virtual std::vector<std::string> flush(std::chrono::milliseconds timeout) = 0;
};

}  // namespace handoff::proxy
