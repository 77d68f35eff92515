// Loading and validating a Handoff config file.
//
// Every problem found is reported, not only the first: each with the file, 1-based line and
// column, and the YAML path (`routes[2].key`) it concerns. Unknown keys are errors.
#pragma once

#include "handoff/config/config.hpp"
#include "handoff/config/reload.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace handoff::config {

struct config_error {
    std::string file;
    int line = 0;      // 1-based; 0 when not tied to a place in the file
    int column = 0;    // 1-based
    std::string path;  // YAML path, e.g. "routes[1].topic"
    std::string message;
};

// "file:line:column: path: message"
std::string format(const config_error& e);

struct load_result {
    std::optional<config> value;  // set only when errors is empty
    std::vector<config_error> errors;
    std::vector<config_error> warnings;  // deprecated settings; the config loads all the same
};

// Looks up an environment variable for ${NAME} expansion; returns nullopt when unset.
using env_lookup = std::function<std::optional<std::string>(const std::string&)>;

// Reads and validates `path`. ${NAME} in scalar values is replaced from `env` (the process
// environment by default); an unset variable is an error unless written ${NAME:-default}.
load_result load_file(const std::string& path, env_lookup env = {});

// As load_file, for text already in memory; `file` names it in errors.
load_result load_string(std::string_view yaml, const std::string& file, env_lookup env = {});

// The effective config as YAML-like JSON text with secrets replaced by "<redacted>".
std::string to_redacted_json(const config& c);

// sections_needing_restart and plan_reload: reload.hpp.

}  // namespace handoff::config
