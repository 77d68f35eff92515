#pragma once

#include <string>

namespace handoff::adapters::kafka {

// The librdkafka version linked at run time, e.g. "2.15.1".
std::string librdkafka_version();

}  // namespace handoff::adapters::kafka
