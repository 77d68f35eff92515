#include "handoff/adapters/kafka/version.hpp"

#include <librdkafka/rdkafka.h>

namespace handoff::adapters::kafka {

std::string librdkafka_version() { return rd_kafka_version_str(); }

}  // namespace handoff::adapters::kafka
