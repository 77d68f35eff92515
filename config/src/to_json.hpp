// The config as JSON, for the admin endpoint and for reload's section comparison.
#pragma once

#include "handoff/config/config.hpp"

#include <nlohmann/json.hpp>

namespace handoff::config::detail {

// The effective config as JSON; with `redact`, secret property values are "<redacted>".
nlohmann::ordered_json config_json(const config& c, bool redact);

}  // namespace handoff::config::detail
