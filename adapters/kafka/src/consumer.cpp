#include "handoff/adapters/kafka/consumer.hpp"

#include "conf.hpp"
#include "consumer_internal.hpp"

#include <handoff/common/log.hpp>

namespace handoff::adapters::kafka {

namespace consumer_detail {

tpl_ptr to_list(const std::vector<proxy::topic_partition>& parts) {
    tpl_ptr l(rd_kafka_topic_partition_list_new(static_cast<int>(parts.size())));
    for (const auto& p : parts) rd_kafka_topic_partition_list_add(l.get(), p.topic.c_str(), p.partition);
    return l;
}

std::vector<proxy::topic_partition> from_list(const rd_kafka_topic_partition_list_t* l) {
    std::vector<proxy::topic_partition> out;
    if (!l) return out;
    out.reserve(static_cast<std::size_t>(l->cnt));
    for (int i = 0; i < l->cnt; ++i) out.push_back({l->elems[i].topic, l->elems[i].partition});
    return out;
}

void on_log(const rd_kafka_t*, int level, const char* fac, const char* buf) noexcept {
    try {
        const auto l = level <= 2   ? log::level::error
                       : level <= 4 ? log::level::warn
                       : level <= 6 ? log::level::info
                                    : log::level::debug;
        if (!log::enabled(l)) return;
        log::write(l, "librdkafka", {{"facility", fac ? fac : ""}, {"detail", buf ? buf : ""}, {"client", "consumer"}});
    } catch (...) {}
}

// Producer-only properties from kafka.properties are not applied to consumers (librdkafka would
// warn about each one).
bool producer_only(const std::string& name) {
    static const char* names[] = {"acks",
                                  "request.required.acks",
                                  "enable.idempotence",
                                  "linger.ms",
                                  "queue.buffering.max.ms",
                                  "queue.buffering.max.messages",
                                  "queue.buffering.max.kbytes",
                                  "message.timeout.ms",
                                  "delivery.timeout.ms",
                                  "batch.num.messages",
                                  "batch.size",
                                  "compression.codec",
                                  "compression.type",
                                  "message.send.max.retries",
                                  "retries",
                                  "max.in.flight.requests.per.connection",
                                  "max.in.flight",
                                  "transactional.id",
                                  "transaction.timeout.ms",
                                  "enable.gapless.guarantee",
                                  "sticky.partitioning.linger.ms",
                                  "partitioner",
                                  "request.timeout.ms",
                                  "message.copy.max.bytes"};
    for (const char* n : names) {
        if (name == n) return true;
    }
    return false;
}

rd_kafka_conf_t* consumer_conf(const property_list& defaults, const std::map<std::string, std::string>& shared,
                               const std::map<std::string, std::string>& own, const property_list& fixed,
                               std::string& error) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    bool ok = true;
    for (const auto& [n, v] : defaults) ok = ok && detail::set(conf, n, v, error);
    for (const auto& [n, v] : shared) {
        if (!producer_only(n)) ok = ok && detail::set(conf, n, v, error);
    }
    for (const auto& [n, v] : own) ok = ok && detail::set(conf, n, v, error);
    for (const auto& [n, v] : fixed) ok = ok && detail::set(conf, n, v, error);
    if (!ok) {
        rd_kafka_conf_destroy(conf);
        return nullptr;
    }
    return conf;
}

}  // namespace consumer_detail

using consumer_detail::consumer_conf;
using consumer_detail::consumer_impl;
namespace asio = boost::asio;
namespace log = proxy::log;

std::shared_ptr<proxy::consumer> make_consumer(asio::any_io_executor strand, const config::kafka_config& kafka,
                                               const config::subscription& sub, const std::string& bootstrap,
                                               std::string& error) {
    rd_kafka_conf_t* conf =
        consumer_conf({{"client.id", "handoff-" + sub.name},
                       {"partition.assignment.strategy", "cooperative-sticky"},
                       {"enable.partition.eof", "false"}},
                      kafka.properties, sub.properties,
                      {{"bootstrap.servers", bootstrap},
                       {"group.id", sub.group},
                       {"enable.auto.offset.store", "false"},
                       {"auto.offset.reset", config::to_string(sub.auto_offset_reset)},
                       // Stored offsets are committed by librdkafka in the background (and once more at close);
                       // the config refuses the property in a subscription, kafka.properties cannot turn it off.
                       {"enable.auto.commit", "true"}},
                      error);
    if (!conf) {
        error = "subscription '" + sub.name + "': " + error;
        return nullptr;
    }
    auto c = std::make_shared<consumer_impl>(strand, sub.name, sub.topics);
    if (!c->init(conf, error)) {
        error = "subscription '" + sub.name + "': " + error;
        return nullptr;
    }
    log::info("kafka consumer created", {{"subscription", sub.name}, {"group", sub.group}, {"topics", sub.topics}});
    return c;
}

}  // namespace handoff::adapters::kafka
