// The inbound port from Kafka, as the core sees it: a consumer-group member. Implemented by
// adapters/kafka (librdkafka's high-level KafkaConsumer).
//
// Threading: the adapter is bound to one executor (a strand). Every listener callback runs on
// it, and every method below except `lag` and `close` must be called from it. Callbacks must not
// block or throw. `lag` may be called from any thread. `close` is the shutdown exception: it
// blocks, and is called once after the io_context stopped running (it may invoke `on_revoked` on
// the calling thread).
//
// Offsets: the consumer never stores an offset by itself (enable.auto.offset.store=false). The
// core calls `store_offset` with the next offset to consume once everything before it is
// resolved; the adapter commits stored offsets only (periodically, on revocation and in `close`).
#pragma once

#include "handoff/ports/producer.hpp"

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace handoff::proxy {

struct topic_partition {
    std::string topic;
    std::int32_t partition = -1;
    friend auto operator<=>(const topic_partition&, const topic_partition&) = default;
};

struct consumed_record {
    std::string topic;
    std::int32_t partition = -1;
    std::int64_t offset = -1;
    std::optional<std::string> key;  // nullopt for a null key
    std::string value;
    bool null_value = false;             // a tombstone (`value` is empty then)
    std::int64_t timestamp_ms = -1;      // the record's timestamp (ms since the epoch); -1 when absent
    std::vector<record_header> headers;  // in record order; names as written
};

enum class store_result {
    ok,
    not_assigned,  // the partition is no longer assigned (librdkafka ERR__STATE): nothing stored
    failed,
};

// Consumer lag of one assigned partition: records not yet processed.
struct partition_lag {
    std::string topic;
    std::int32_t partition = -1;
    std::int64_t lag = 0;
};

class consumer_listener {
public:
    virtual ~consumer_listener() = default;
    // The group gave us these partitions; records for them follow.
    virtual void on_assigned(const std::vector<topic_partition>& partitions) = 0;
    // These partitions are being taken away (`lost`: without a clean handover). Called before the
    // adapter gives them up; after it returns, the listener must not store offsets for them.
    virtual void on_revoked(const std::vector<topic_partition>& partitions, bool lost) = 0;
    virtual void on_record(consumed_record record) = 0;
    // Housekeeping: called on the same strand as on_record, at least every 500 ms while the
    // consumer runs, records or not.
    virtual void on_idle() {}
};

class consumer {
public:
    virtual ~consumer() = default;

    // Subscribes and starts serving the consumer queue; `listener` must outlive the consumer.
    virtual void start(consumer_listener& listener) = 0;

    // Stops/starts fetching for assigned partitions. Callers resume only what they paused.
    virtual void pause(const std::vector<topic_partition>& partitions) = 0;
    virtual void resume(const std::vector<topic_partition>& partitions) = 0;

    // Stores `next_offset` (the next record to consume) for commit.
    virtual store_result store_offset(const topic_partition& partition, std::int64_t next_offset) = 0;

    // Blocking, once, after the io_context stopped: commits stored offsets synchronously and
    // leaves the group. No callbacks run afterwards (except `on_revoked` from inside close).
    virtual void close() = 0;

    // The group member id (empty before the first join); for logs.
    virtual std::string member_id() const = 0;

    // Any thread (the /readyz probe). False, with the reason, while the consumer cannot yet read
    // what it must (the reply consumer: its topic is missing, could not be created, or its end
    // offsets are not read yet). A group consumer is always ready here: its readiness is the
    // group's business (subscriptions do not hold /readyz).
    virtual bool ready(std::string& reason) const {
        reason.clear();
        return true;
    }

    // Non-blocking; the exception to the strand rule: callable from any thread (metrics scrape).
    // For each currently assigned partition: high watermark minus the last offset stored through
    // `store_offset` (or minus the consume position while nothing was stored yet). Partitions
    // whose high watermark (or position) is not known yet are left out. Empty after `close`.
    virtual std::vector<partition_lag> lag() const = 0;

    // Any thread. The reply and state consumers: how many times a partition's fetch was restarted
    // because it read nothing while records waited past the point read (always 0 for a group
    // consumer, whose group rebalances instead).
    virtual std::uint64_t fetch_restarts() const { return 0; }
};

}  // namespace handoff::proxy
