// Reload: the one list of start-up-only sections, used both to report what a new file changed
// and to keep their running values.
#include "handoff/config/reload.hpp"

#include "to_json.hpp"

#include <algorithm>

namespace handoff::config {
namespace {

struct startup_section {
    const char* name;  // its key in the config file and in /config
    void (*keep_running)(config& next, const config& running);
};

constexpr startup_section startup_sections[] = {
    {"profile", [](config& n, const config& r) { n.profile = r.profile; }},
    {"listen", [](config& n, const config& r) { n.listen = r.listen; }},
    {"admin", [](config& n, const config& r) { n.admin = r.admin; }},
    {"upstream", [](config& n, const config& r) { n.upstream = r.upstream; }},
    {"kafka", [](config& n, const config& r) { n.kafka = r.kafka; }},
    {"subscriptions", [](config& n, const config& r) { n.subscriptions = r.subscriptions; }},
    {"status", [](config& n, const config& r) { n.status = r.status; }},
    {"idempotency", [](config& n, const config& r) { n.idempotency = r.idempotency; }},
    {"state", [](config& n, const config& r) { n.state = r.state; }},
    {"replies", [](config& n, const config& r) { n.replies = r.replies; }},
};

}  // namespace

std::vector<std::string> sections_needing_restart(const config& running, const config& next) {
    // Real values, not the redacted ones: a changed password is a change.
    const auto before = detail::config_json(running, /*redact=*/false);
    const auto after = detail::config_json(next, /*redact=*/false);
    std::vector<std::string> out;
    for (const auto& section : startup_sections) {
        const auto a = before.find(section.name);
        const auto b = after.find(section.name);
        const bool in_a = a != before.end(), in_b = b != after.end();
        if (in_a != in_b || (in_a && *a != *b)) out.emplace_back(section.name);
    }
    return out;
}

bool answers_with_replies(const route& r) noexcept {
    return r.mode == mode::reply || (r.canary_percent_bp > 0 && r.canary_mode == mode::reply);
}

reload_plan plan_reload(const config& running, config next) {
    reload_plan plan;
    plan.restart_needed = sections_needing_restart(running, next);
    if (!plan.restart_needed.empty()) {
        for (const auto& section : startup_sections) section.keep_running(next, running);
    }
    if (next.replies.topic.empty() && std::any_of(next.routes.begin(), next.routes.end(), answers_with_replies)) {
        plan.errors.emplace_back("reply routes need replies.topic, which takes effect only at a restart");
        return plan;
    }
    plan.in_force = std::make_shared<const config>(std::move(next));
    return plan;
}

}  // namespace handoff::config
