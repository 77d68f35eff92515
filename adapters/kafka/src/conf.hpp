// Private to adapters/kafka: setting librdkafka properties with errors that name the property.
#pragma once

#include <librdkafka/rdkafka.h>

#include <string>

namespace handoff::adapters::kafka::detail {

inline bool set(rd_kafka_conf_t* conf, const std::string& name, const std::string& value, std::string& error) {
    char errstr[512] = {};
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        error = "kafka property '" + name + "': " + errstr;
        return false;
    }
    return true;
}

}  // namespace handoff::adapters::kafka::detail
