// The librdkafka implementation of handoff::proxy::consumer (see adapters/kafka/README.md,
// "Consumer").
//
// Threading: bound to `strand`. librdkafka's consumer queue signals an eventfd (queue IO event)
// that the strand watches; the wake-up handler serves the queue with rd_kafka_consumer_poll(rk, 0),
// so records, rebalances and errors reach the listener on the strand. A 500 ms timer also serves
// it, so the member polls even when no record arrives (max.poll.interval.ms). `close()` is the
// exception: it blocks and runs on the calling thread after the io_context stopped.
#pragma once

#include <handoff/config/config.hpp>
#include <handoff/ports/consumer.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace handoff::adapters::kafka {

// Creates a KafkaConsumer for `sub`: group.id = sub.group, enable.auto.offset.store=false,
// enable.auto.commit=true (commits stored offsets only), auto.offset.reset from the
// subscription, partition.assignment.strategy=cooperative-sticky (eager protocols are handled
// too), then `kafka.properties` and `sub.properties`. nullptr and `error_out` when librdkafka
// rejects a property.
std::shared_ptr<proxy::consumer> make_consumer(boost::asio::any_io_executor strand, const config::kafka_config& kafka,
                                               const config::subscription& sub, const std::string& bootstrap_servers,
                                               std::string& error_out);

// Creates the calling side's reply consumer for `replies.topic` (README, "Reply routes"). No
// consumer group: a control thread of its own (never an io_context thread: its Kafka calls block)
// reads the topic's metadata; creates the topic with the Admin API when it is missing and
// `replies.create.enabled`; reads every partition's end offset and assigns them all by hand from
// there (rd_kafka_incremental_assign), which is when `ready()` turns true and the listener's
// `on_assigned` runs (on the strand); then re-reads the partition count every
// `replies.refresh_interval` and assigns new partitions from their beginning. Positions stay in
// librdkafka's memory across reconnects; nothing is committed (auto.offset.reset=earliest applies
// only when a position falls out of the log). `ready()` gives the reason while not ready.
std::shared_ptr<proxy::consumer> make_reply_consumer(boost::asio::any_io_executor strand,
                                                     const config::kafka_config& kafka,
                                                     const config::replies_config& replies,
                                                     const std::string& bootstrap_servers, std::string& error_out);

// Creates the consumer of the shared state topic (state.shared; README, "Running several
// replicas"): like the reply consumer (no group, a control thread, every partition assigned by
// hand), but every partition is read from its beginning, and `ready()` turns true only once the
// end offsets read at that first assignment are reached (an EOF event counts, for a partition whose
// last records were removed). A missing topic is created (state.partitions,
// state.replication_factor, cleanup.policy=compact,delete, retention.ms=state.retention,
// min.compaction.lag.ms=`key_ttl`). An existing topic that is compacted sooner than `key_ttl`
// keeps the consumer not ready (see reply_consumer.cpp, check_compaction).
std::shared_ptr<proxy::consumer> make_state_consumer(boost::asio::any_io_executor strand,
                                                     const config::kafka_config& kafka,
                                                     const config::state_config& state,
                                                     std::chrono::milliseconds key_ttl,
                                                     const std::string& bootstrap_servers, std::string& error_out);

}  // namespace handoff::adapters::kafka
