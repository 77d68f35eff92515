// Reload: what a new config can change in a running process. Routes, routing, defaults, limits,
// drain and log take effect at once; the sections read only at start-up keep their running
// values until a restart (so the admin /config endpoint shows what is really in force).
#pragma once

#include "handoff/config/config.hpp"

#include <memory>
#include <string>
#include <vector>

namespace handoff::config {

// The sections that a reload cannot apply (they are taken at start-up only) and that differ
// between `running` and `next`, compared on real values (secrets included), in a fixed order:
// profile, listen, admin, upstream, kafka, subscriptions, status, idempotency, replies.
std::vector<std::string> sections_needing_restart(const config& running, const config& next);

// True when the route (or its canary) answers with replies, so the process needs replies.topic.
bool answers_with_replies(const route& r) noexcept;

struct reload_plan {
    std::shared_ptr<const config> in_force;   // the config to run with; null when rejected
    std::vector<std::string> restart_needed;  // sections changed in the file, not applied
    std::vector<std::string> errors;          // why the reload is rejected
};

// `next` is a config that loaded without errors. The plan keeps the running values of every
// start-up-only section, and rejects a reload whose routes need a section that only a restart
// could supply (reply routes without replies.topic).
reload_plan plan_reload(const config& running, config next);

}  // namespace handoff::config
