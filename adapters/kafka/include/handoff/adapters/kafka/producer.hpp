// The librdkafka implementation of handoff::proxy::producer (see adapters/kafka/README.md).
//
// Threading: `produce` may be called from any io_context thread. Delivery handlers run on an
// io_context thread: librdkafka's main queue signals an eventfd that the io_context watches, and
// the wake-up handler serves the queue with rd_kafka_poll(rk, 0) (no polling timers). The one
// exception is shutdown: `flush` and the destructor serve the queue from the calling thread, so
// call them after the io_context stopped running (or from its single thread).
//
// Lifetime: destroy the producer when no other thread is running the io_context's handlers.
// Every accepted record's handler has run by the time the destructor returns.
#pragma once

#include <handoff/config/config.hpp>
#include <handoff/ports/producer.hpp>

#include <boost/asio/io_context.hpp>

#include <memory>
#include <string>

namespace handoff::adapters::kafka {

// The concrete producer; `make_producer` returns one. Exposed for tests only.
class kafka_producer : public proxy::producer {
public:
    // Triggers a librdkafka fatal error (rd_kafka_test_fatal_error) on the current handle, as an
    // idempotence failure would. The producer then purges, reports every pending record as not
    // (or possibly) persisted, and re-creates its handle.
    virtual void inject_fatal_error_for_test() = 0;
};

// Creates a producer with enable.idempotence=true and acks=all (a user property that weakens
// either is an error), `bootstrap_servers`, defaults (linger.ms=1, client.id=handoff,
// queue.buffering.max.messages=100000, queue.buffering.max.kbytes=65536,
// message.timeout.ms=30000) and then `cfg.properties`. Returns nullptr and sets `error_out`
// (naming the property) when librdkafka rejects a property or the handle cannot be created.
// `ioc` must outlive the producer.
std::shared_ptr<proxy::producer> make_producer(boost::asio::io_context& ioc, const config::kafka_config& cfg,
                                               const std::string& bootstrap_servers, std::string& error_out);

}  // namespace handoff::adapters::kafka
