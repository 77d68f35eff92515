// Counters kept as atomics by other parts (subscriptions, the producer adapter) exported to
// Prometheus at each scrape: counters grow by what changed since the last scrape, gauges take
// the current value.
#pragma once

#include "handoff/ports/consumer.hpp"
#include "handoff/ports/producer.hpp"

#include <memory>
#include <string>
#include <vector>

namespace handoff::proxy {

class metrics;
class subscription;

// Per subscription: the subscription_counters, in-flight and buffered gauges, and consumer lag
// per assigned partition (a partition no longer reported, revoked or without a watermark yet,
// reads 0). The subscriptions must outlive `stats`' last scrape.
void export_subscription_metrics(metrics& stats, std::vector<const subscription*> subscriptions);

// handoff_kafka_producer_recreations_total{reason="fatal"|"stalled"} from producer::stats().
void export_producer_metrics(metrics& stats, std::shared_ptr<const producer> kafka);

// handoff_kafka_fetch_restarts_total{consumer=name} from consumer::fetch_restarts() (the state or
// reply consumer); nothing once the consumer is gone.
void export_fetch_restarts(metrics& stats, std::weak_ptr<const consumer> source, std::string name);

}  // namespace handoff::proxy
