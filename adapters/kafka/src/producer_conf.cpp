// The producer's librdkafka configuration: Handoff's defaults, the user's properties, and the
// durability guard (idempotence and acks=all cannot be turned off).
#include "conf.hpp"
#include "producer_internal.hpp"

#include "handoff/config/kafka_rules.hpp"

#include <utility>

namespace handoff::adapters::kafka::producer_detail {

using detail::set;

// Builds the librdkafka configuration (without callbacks/opaque, which are per generation).
conf_ptr build_conf(const config::kafka_config& cfg, const std::string& bootstrap, std::string& error) {
    conf_ptr conf(rd_kafka_conf_new());
    for (const auto& [name, raw] : cfg.properties) {
        // The config loader's rule itself (config::weakened_durability): load time and start-up agree.
        if (const auto value = config::weakened_durability(name, raw)) {
            error = "kafka property '" + name + "' = '" + *value +
                    "' is not allowed: Handoff requires enable.idempotence=true and acks=all";
            return nullptr;
        }
    }
    const std::pair<const char*, const char*> defaults[] = {
        {"client.id", "handoff"},
        {"linger.ms", "1"},
        {"queue.buffering.max.messages", "100000"},
        {"queue.buffering.max.kbytes", "65536"},
        {"message.timeout.ms", "30000"},
        // The idempotent producer's state (producer ID) is only published in statistics.
        {"statistics.interval.ms", "1000"},
    };
    for (const auto& [name, value] : defaults) {
        if (!set(conf.get(), name, value, error)) return nullptr;
    }
    for (const auto& [name, value] : cfg.properties) {
        if (!set(conf.get(), name, value, error)) return nullptr;
    }
    if (!set(conf.get(), "bootstrap.servers", bootstrap, error) ||
        !set(conf.get(), "enable.idempotence", "true", error) || !set(conf.get(), "acks", "all", error)) {
        return nullptr;
    }
    return conf;
}

}  // namespace handoff::adapters::kafka::producer_detail
